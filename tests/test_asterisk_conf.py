"""The rendered Asterisk configuration, read back with a small parser and checked for consistency.

Every check reads the rendered text the way Asterisk would (sections, `key = value`, `key => value`,
`exten => name,priority,App(args)` and `same => n(label),App(args)`) and compares it with the
settings, the FastAGI routes, the routing rules, the gazetteer and the prompt catalogue.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import shutil
import stat
import tomllib
import wave
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import routing
from asterisk_conf import (
    AGENT_CONTEXT,
    CONFIG_FILES,
    INBOUND_CONTEXT,
    SURVEY_CONTEXT,
    SURVEY_EXTEN,
    TRANSFER_CONTEXT,
    ConfigError,
    agent_sip_password,
    config_warnings,
    render_config,
    write_config,
)
from hotline.settings import load_settings
from ivr.flows import AGI_ROUTES

PROMPTS_TOML = Path(__file__).resolve().parents[1] / "ivr" / "data" / "prompts.toml"
CATALOGUE = tomllib.loads(PROMPTS_TOML.read_text("utf-8"))["prompts"]
STRONG = dict(ami_secret="s3cret-for-the-ami-0123", agent_sip_secret="another-long-secret-4567")


# ------------------------------------------------------------------------------ the parser
@dataclass
class Section:
    name: str
    options: str | None                      # "!" for a template, a template name, or None
    entries: list[tuple[str, str, str]] = field(default_factory=list)   # (key, "=" or "=>", value)

    def values(self, key: str) -> list[str]:
        return [v for k, _, v in self.entries if k == key]

    def one(self, key: str) -> str:
        found = self.values(key)
        assert len(found) == 1, f"[{self.name}] has {len(found)} {key!r} lines"
        return found[0]


def parse_conf(text: str) -> list[Section]:
    sections: list[Section] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"(?<!\\);", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        head = re.fullmatch(r"\[([^\[\]]+)\](?:\(([^()]*)\))?", line)
        if head:
            sections.append(Section(head.group(1), head.group(2)))
            continue
        entry = re.fullmatch(r"([A-Za-z0-9_-]+(?:\(.*\))?)\s*(=>|=)\s*(.*)", line)   # eventfilter(…) = …
        assert entry, f"line {n} is neither a section nor `key = value`: {raw!r}"
        assert sections, f"line {n} comes before any section: {raw!r}"
        sections[-1].entries.append((entry.group(1), entry.group(2), entry.group(3)))
    return sections


def by_name(sections: list[Section]) -> dict[str, list[Section]]:
    out: dict[str, list[Section]] = {}
    for s in sections:
        out.setdefault(s.name, []).append(s)
    return out


def split_args(args: str) -> list[str]:
    """Split application arguments on top-level commas, as Asterisk does (parentheses nest)."""
    out, depth, cur = [], 0, ""
    for ch in args:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch in "(["
        depth -= ch in ")]"
        assert depth >= 0, f"unbalanced brackets in {args!r}"
        cur += ch
    assert depth == 0, f"unbalanced brackets in {args!r}"
    return out + [cur]


@dataclass
class Step:
    context: str
    exten: str
    priority: str
    label: str | None
    app: str
    args: str

    @property
    def argv(self) -> list[str]:
        return split_args(self.args)


def parse_dialplan(text: str) -> dict[str, dict[str, list[Step]]]:
    """context → exten → its steps, in order; checks priorities as pbx_config would."""
    plan: dict[str, dict[str, list[Step]]] = {}
    for section in parse_conf(text):
        if section.name in ("general", "globals"):
            continue
        assert section.name not in plan, f"context {section.name} is defined twice"
        extens = plan.setdefault(section.name, {})
        current = None
        for key, op, value in section.entries:
            assert op == "=>" and key in ("exten", "same"), f"[{section.name}] {key} {op} {value}"
            if key == "exten":
                current, priority, rest = value.split(",", 2)
                assert current not in extens, f"{section.name}: exten {current} defined twice"
                extens[current] = []
            else:
                assert current is not None, f"{section.name}: `same` before any exten"
                priority, rest = value.split(",", 1)
            m = re.fullmatch(r"(1|n)(?:\(([a-z_]+)\))?", priority)
            assert m, f"{section.name},{current}: priority {priority!r}"
            assert (m.group(1) == "1") == (not extens[current]), f"{section.name},{current}: priority 1 must come first"
            app = re.fullmatch(r"([A-Za-z]+)\((.*)\)", rest)
            assert app, f"{section.name},{current}: {rest!r} is not App(args)"
            extens[current].append(Step(section.name, current, m.group(1), m.group(2), app.group(1), app.group(2)))
    return plan


def steps(plan, app: str | None = None) -> list[Step]:
    return [s for extens in plan.values() for ss in extens.values() for s in ss if app is None or s.app == app]


# ------------------------------------------------------------------------------ helpers
def settings(**kw):
    return load_settings(**{**STRONG, **kw})


def rendered(**kw) -> tuple[object, dict[str, str]]:
    s = settings(**kw)
    return s, render_config(s)


def queue_sections(files: dict[str, str]) -> dict[str, Section]:
    out = {}
    for sec in parse_conf(files["queues.conf"]):
        if sec.name != "general" and sec.options != "!":
            assert sec.name not in out, f"queue {sec.name} defined twice"
            out[sec.name] = sec
    return out


def pjsip_objects(files: dict[str, str]) -> dict[tuple[str, str], Section]:
    out = {}
    for sec in parse_conf(files["pjsip.conf"]):
        kind = sec.one("type")
        assert (sec.name, kind) not in out, f"pjsip {kind} {sec.name} defined twice"
        out[(sec.name, kind)] = sec
    return out


def goto_targets(step: Step) -> list[str]:
    if step.app == "Goto":
        return [step.args]
    if step.app == "GotoIf":
        _, _, branches = step.args.partition("?")
        return [b for b in branches.split(":") if b]
    return []


def resolve(plan, step: Step, target: str) -> None:
    """[[context,]exten,]priority, as Goto reads it; a priority is 1 or a label of that extension."""
    parts = target.split(",")
    assert 1 <= len(parts) <= 3, target
    context, exten, priority = [step.context, step.exten][:3 - len(parts)] + parts
    assert context in plan, f"{step.context},{step.exten}: {step.app} to undefined context {context}"
    assert exten in plan[context], f"{step.context},{step.exten}: {step.app} to undefined exten {exten}@{context}"
    labels = {s.label for s in plan[context][exten] if s.label}
    assert priority == "1" or priority in labels, f"{step.app} to {target}: no priority/label {priority}"


def prompt_id(settings_, path: str) -> str:
    folder = str(Path(settings_.prompts_dir).absolute())
    assert path.startswith(folder + "/"), f"prompt {path} is not under prompts_dir {folder}"
    pid = path[len(folder) + 1:]
    assert pid in CATALOGUE, f"prompt {pid!r} ({path}) is not in ivr/data/prompts.toml"
    assert not Path(pid).suffix, f"prompt {path} must be given without extension"
    return pid


# ------------------------------------------------------------------------------ the tests
def test_every_file_renders_and_parses():
    s, files = rendered()
    assert set(files) == set(CONFIG_FILES) == {"asterisk.conf", "pjsip.conf", "extensions.conf", "queues.conf", "manager.conf",
                                                "musiconhold.conf", "modules.conf"}
    for name, text in files.items():
        assert "{{" not in text and "{%" not in text, name
        assert parse_conf(text), f"{name} has no section"
    plan = parse_dialplan(files["extensions.conf"])
    assert {INBOUND_CONTEXT, TRANSFER_CONTEXT, SURVEY_CONTEXT, AGENT_CONTEXT} <= set(plan)
    moh = by_name(parse_conf(files["musiconhold.conf"]))["default"][0]
    # our own hold music (built with the prompts), not the stock folder a plain Asterisk may lack
    assert (moh.one("mode"), moh.one("directory")) == ("files", f"{Path(s.prompts_dir).resolve()}/moh")


def test_an_empty_hold_music_folder_is_a_warning(tmp_path):
    from asterisk_conf import config_warnings
    from ivr.prompts import build_hold_music
    s = settings(prompts_dir=tmp_path / "prompts")
    assert any("hold music" in w and "silence" in w for w in config_warnings(s))
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed (test.sh installs it)")
    built = build_hold_music(s)
    with wave.open(str(built), "rb") as w:
        assert (w.getframerate(), w.getnchannels()) == (8000, 1) and w.getnframes() / 8000 > 20
    assert not any("hold music" in w for w in config_warnings(s))
    assert build_hold_music(s) is None      # up to date: not rebuilt


def test_agi_routes_exist_and_point_at_our_fastagi_server():
    _, files = rendered(agi_host="0.0.0.0", agi_public_host="10.20.30.40", agi_port=4600)
    plan = parse_dialplan(files["extensions.conf"])
    used = {}
    for step in steps(plan, "AGI"):
        m = re.fullmatch(r"agi://([^/:]+):(\d+)/([a-z_]+)", step.argv[0])
        assert m, step.args
        assert (m.group(1), int(m.group(2))) == ("10.20.30.40", 4600)
        assert m.group(3) in AGI_ROUTES
        used[m.group(3)] = step.context
    assert used == {"inbound": INBOUND_CONTEXT, "survey": SURVEY_CONTEXT}
    # without agi_public_host Asterisk dials agi_host
    _, files = rendered(agi_host="127.0.0.2")
    assert "agi://127.0.0.2:4573/inbound" in files["extensions.conf"]


def test_the_inbound_call_records_runs_the_flow_then_queues():
    s, files = rendered(asterisk_spool_dir="/data/rec", city_queue="hotline-city", queue_max_wait_seconds=240)
    plan = parse_dialplan(files["extensions.conf"])
    call = plan[INBOUND_CONTEXT][s.service_number]
    apps = [st.app for st in call]
    for before, after in [("Answer", "MixMonitor"), ("MixMonitor", "AGI"), ("AGI", "Queue")]:
        assert apps.index(before) < apps.index(after), apps
    rec = next(st for st in call if st.app == "Set" and st.args.startswith("HOTLINE_REC="))
    assert rec.args == "HOTLINE_REC=${STRFTIME(${EPOCH},Asia/Shanghai,%Y/%m/%d)}/${UNIQUEID}.wav"
    assert apps.index("Set") < apps.index("MixMonitor")
    mix = next(st for st in call if st.app == "MixMonitor")
    assert mix.argv[0] == "/data/rec/${HOTLINE_REC}"
    queue = next(st for st in call if st.app == "Queue")
    assert queue.argv[0] == "${HOTLINE_QUEUE}" and queue.argv[4] == "240"
    default = next(st for st in call if st.app == "ExecIf")
    assert default.args.endswith("?Set(HOTLINE_QUEUE=hotline-city)") and '"${HOTLINE_QUEUE}" = ""' in default.args
    # intent `done` ends the call (the flow has said goodbye); the other DIDs reach the same extension
    done = next(st for st in call if st.app == "GotoIf" and '"done"' in st.args)
    assert next(x for x in call if x.label == done.args.split("?")[1]).app == "Hangup"
    for did in ("_X.", "_+X.", "s"):
        assert plan[INBOUND_CONTEXT][did][0].app == "Goto"
        assert plan[INBOUND_CONTEXT][did][0].args == f"{INBOUND_CONTEXT},{s.service_number},1"


def test_every_goto_and_dial_target_is_defined():
    s, files = rendered(trunk_host="sip.operator.example", trunk_username="0755123", trunk_password="pw-123")
    plan = parse_dialplan(files["extensions.conf"])
    gotos = 0
    for step in steps(plan):
        for target in goto_targets(step):
            resolve(plan, step, target)
            gotos += 1
    assert gotos >= 10
    pjsip = pjsip_objects(files)
    for step in steps(plan, "Dial"):
        for dest in step.argv[0].split("&"):
            tech, _, rest = dest.partition("/")
            if tech == "PJSIP":
                assert (rest.split("@")[0], "endpoint") in pjsip, dest
            else:
                assert tech == "Local", dest
                exten, _, context = rest.partition("@")
                assert context in plan and exten in plan[context], dest
    # the contexts the endpoints land in
    for (name, kind), sec in pjsip.items():
        if kind == "endpoint":
            assert sec.one("context") in plan, name
    assert pjsip[("trunk", "endpoint")].one("context") == INBOUND_CONTEXT
    # survey_dial's PJSIP/{number}@trunk names a real endpoint
    assert s.survey_dial.format(number="13800138000").split("@")[1] == "trunk"
    # AMI: Originate lands in hotline-survey/s and runs the survey flow; Redirect lands in hotline-transfer
    survey = plan[SURVEY_CONTEXT][SURVEY_EXTEN]
    assert [st.app for st in survey][-2:] == ["AGI", "Hangup"] and survey[-2].args.endswith("/survey")
    assert set(queue_sections(files)) <= set(plan[TRANSFER_CONTEXT])
    assert plan[TRANSFER_CONTEXT]["i"][0].args == f"{TRANSFER_CONTEXT},{s.city_queue},1"
    # agents reach each other and the service number
    assert set(s.agent_extensions) | {s.service_number} <= set(plan[AGENT_CONTEXT])


def test_every_queue_used_or_routed_to_is_defined():
    s, files = rendered(ivr_district_menu=["440304", "440307"])
    plan = parse_dialplan(files["extensions.conf"])
    queues = queue_sections(files)
    for step in steps(plan, "Queue"):
        name = step.argv[0]
        if name == "${HOTLINE_QUEUE}":
            default = next(st for st in plan[step.context][step.exten] if st.app == "ExecIf")
            name = re.search(r"Set\(HOTLINE_QUEUE=([^)]*)\)", default.args).group(1)
        assert "$" not in name, f"{step.context},{step.exten}: queue {name} is not checked"
        assert name in queues, f"Queue({name}) in {step.context},{step.exten} is not in queues.conf"
        assert step.argv[4] == str(s.queue_max_wait_seconds)
    # every transfer target the routing rules give a placed case (any district, any 街道) is a queue
    gz = routing.load_gazetteer("shenzhen")
    rules = routing.load_rules(routing.packaged_city("shenzhen") / "rules.csv")
    targets = set()
    for district in gz.district_codes:
        streets = [None] + [d.code for d in gz.divisions.values() if d.level == "street" and d.parent_code == district]
        for street in streets:
            kind, _, name = (rules.route(district, street).transfer_target or "").partition(":")
            if kind == "queue":
                targets.add(name)
    assert "district-dapeng" in targets and "district-440304" in targets
    assert targets <= set(queues)
    assert set(queues) == targets | {s.city_queue}
    # the IVR's district menu queues (rules.route(code)) exist
    for code in s.ivr_district_menu:
        assert rules.route(code).transfer_target.partition(":")[2] in queues
    # every queue inherits the template; the city queue has the agents, the district queues none
    template = next(sec for sec in parse_conf(files["queues.conf"]) if sec.options == "!")
    assert all(sec.options == template.name for sec in queues.values())
    # no static members anywhere: agents join the city queue from the desk (QueueAdd) and can sign out
    assert all(not sec.values("member") for name, sec in queues.items())
    pjsip = pjsip_objects(files)
    assert all((ext, "endpoint") in pjsip for ext in s.agent_extensions)


def test_queue_template_settings():
    _, files = rendered(queue_wrapup_seconds=20, queue_announce_seconds=45)
    template = next(sec for sec in parse_conf(files["queues.conf"]) if sec.options == "!")
    expect = {"strategy": "rrmemory", "timeout": "15", "retry": "5", "wrapuptime": "20", "joinempty": "yes",
              "leavewhenempty": "no", "ringinuse": "no", "announce-frequency": "45", "announce-holdtime": "no",
              "announce-position": "no", "musicclass": "default", "setinterfacevar": "yes",
              "setqueueentryvar": "yes", "maxlen": "0", "servicelevel": "20", "reportholdtime": "no"}
    assert {k: template.one(k) for k in expect} == expect
    general = by_name(parse_conf(files["queues.conf"]))["general"][0]
    assert general.one("persistentmembers") == "yes"
    musicclass = template.one("musicclass")
    assert musicclass in by_name(parse_conf(files["musiconhold.conf"]))


def test_every_prompt_is_in_the_catalogue_with_the_right_use():
    s, files = rendered(prompts_dir="prompts-built")    # relative: made absolute (the tests run in tmp_path)
    assert Path(s.prompts_dir).absolute() == Path.cwd() / "prompts-built"
    plan = parse_dialplan(files["extensions.conf"])
    dialplan_ids = set()
    for step in steps(plan):
        if step.app in ("Playback", "Background"):
            for path in step.argv[0].split("&"):
                pid = prompt_id(s, path)
                assert CATALOGUE[pid]["used_by"] == "dialplan", f"{pid} is used_by {CATALOGUE[pid]['used_by']}"
                dialplan_ids.add(pid)
    assert dialplan_ids == {pid for pid, p in CATALOGUE.items() if p["used_by"] == "dialplan"}
    template = next(sec for sec in parse_conf(files["queues.conf"]) if sec.options == "!")
    queue_ids = set()
    for key, _, value in template.entries:
        if key.startswith("queue-") or key == "periodic-announce":
            for path in value.split(","):
                pid = prompt_id(s, path)
                assert CATALOGUE[pid]["used_by"] == "queue", pid
                queue_ids.add(pid)
    assert queue_ids == {pid for pid, p in CATALOGUE.items() if p["used_by"] == "queue"}
    # the leave-a-message path: prompt, Record under the spool dir, event, thanks
    vm = plan["hotline-voicemail"]
    assert prompt_id(s, vm["s"][0].argv[0]) == "voicemail"
    assert prompt_id(s, vm["closed"][0].argv[0]) == "closed_hours"


def test_voicemail_records_under_the_spool_dir_and_tells_the_ami_client():
    s, files = rendered(asterisk_spool_dir="/var/spool/asterisk/monitor")
    plan = parse_dialplan(files["extensions.conf"])
    vm = plan["hotline-voicemail"]["record"]
    target = next(st for st in vm if st.app == "Set" and st.args.startswith("HOTLINE_VM_FILE="))
    assert target.args == ("HOTLINE_VM_FILE=/var/spool/asterisk/monitor/voicemail/"
                           "${STRFTIME(${EPOCH},Asia/Shanghai,%Y/%m/%d)}/${UNIQUEID}.wav")
    record = next(st for st in vm if st.app == "Record")
    path, silence, max_seconds, options = record.argv
    assert (path, silence, max_seconds) == ("${HOTLINE_VM_FILE}", "5", "120") and "k" in options
    event = next(st for st in vm if st.app == "UserEvent")
    name, *headers = event.argv
    fields = dict(h.split(": ", 1) for h in headers)
    assert name == "HotlineVoicemail"
    # Asterisk adds the channel's Uniqueid itself: a second one would arrive as a list
    assert "Uniqueid" not in fields and fields["File"] == "${HOTLINE_VM_FILE}"
    assert "CALLERID(num)" in fields["Caller"] and fields["Caller"].startswith("${FILTER(0-9+,")
    assert [st.app for st in vm][-2:] == ["Playback", "Hangup"]
    assert prompt_id(s, vm[-2].argv[0]) == "voicemail_thanks"
    # a caller who hangs up while recording still produces the event
    hang = plan["hotline-voicemail"]["h"]
    assert any(st.app == "UserEvent" and st.argv[0] == "HotlineVoicemail" for st in hang)
    # every queue result that means "nobody answered" leads here, from the inbound call and each transfer
    for step in steps(plan, "Queue"):
        after = plan[step.context][step.exten]
        nxt = after[after.index(step) + 1]
        assert nxt.app == "GotoIf" and nxt.args.endswith("?hotline-voicemail,s,1")
        for status in ("TIMEOUT", "FULL", "JOINEMPTY", "LEAVEEMPTY"):
            assert f'"${{QUEUESTATUS}}" = "{status}"' in nxt.args


def test_transfer_extensions_announce_district_queues():
    s, files = rendered()
    plan = parse_dialplan(files["extensions.conf"])
    district = plan[TRANSFER_CONTEXT]["district-440304"]
    assert [st.app for st in district][:3] == ["NoOp", "Playback", "Queue"]
    assert prompt_id(s, district[1].argv[0]) == "transfer_district"
    assert district[2].argv[0] == "district-440304"
    city = plan[TRANSFER_CONTEXT][s.city_queue]
    assert "Playback" not in [st.app for st in city]    # the district announcement is not for the city queue


def test_manager_conf_is_minimal_and_from_the_settings():
    s, files = rendered(ami_host="10.1.2.3", ami_port=5039, ami_username="hotline-ami",
                        ami_permit="10.1.2.0/24, 127.0.0.1/32")
    sections = by_name(parse_conf(files["manager.conf"]))
    general = sections["general"][0]
    assert (general.one("enabled"), general.one("bindaddr"), general.one("port")) == ("yes", "10.1.2.3", "5039")
    assert general.one("timestampevents") == "yes" and general.one("displayconnects") == "no"
    assert set(sections) == {"general", "hotline-ami"}
    user = sections["hotline-ami"][0]
    assert user.one("secret") == STRONG["ami_secret"]
    assert "0.0.0.0/0.0.0.0" in user.values("deny")
    permits = [ipaddress.ip_network(p) for p in user.values("permit")]
    assert permits == [ipaddress.ip_network("10.1.2.0/24"), ipaddress.ip_network("127.0.0.1/32")]
    read, write = set(user.one("read").split(",")), set(user.one("write").split(","))
    assert "all" not in read | write
    assert {"system", "call", "agent", "user", "dialplan"} <= read <= {"system", "call", "agent", "user", "dialplan"}
    filters = [k for k, _, v in user.entries if k.startswith("eventfilter(")]   # only the VarSets we use
    assert "eventfilter(action(exclude),name(Newexten))" in filters and len(filters) == 2
    assert {"call", "agent", "originate"} <= write
    assert not write & {"system", "command", "config", "all"}
    assert user.one("writetimeout") == "5000"
    assert any("not on loopback" in w for w in config_warnings(s))
    # the AMI host must be an address Asterisk can bind
    with pytest.raises(ConfigError, match="ami_host"):
        render_config(settings(ami_host="pbx.example.org"))


def test_pjsip_agents_get_derived_passwords_never_the_secret():
    _, files = rendered(agent_extensions=["2001", "2002"], agent_sip_secret="agents-only-secret-value")
    assert all("agents-only-secret-value" not in text for text in files.values())
    objects = pjsip_objects(files)
    transport = objects[("transport-udp", "transport")]
    assert transport.one("protocol") == "udp"
    for ext in ("2001", "2002"):
        expected = hmac.new(b"agents-only-secret-value", ext.encode(), hashlib.sha256).hexdigest()[:20]
        assert agent_sip_password("agents-only-secret-value", ext) == expected
        endpoint = objects[(ext, "endpoint")]
        auth = objects[(endpoint.one("auth"), "auth")]
        assert (auth.one("username"), auth.one("password")) == (ext, expected)
        assert endpoint.one("context") == AGENT_CONTEXT
        assert endpoint.one("dtmf_mode") == "rfc4733"
        assert endpoint.one("allow") == "alaw,ulaw" and endpoint.one("disallow") == "all"
        assert (endpoint.one("aors"), "aor") in objects
        assert endpoint.one("transport") == "transport-udp"
    assert not any(name.startswith("trunk") for name, _ in objects)    # no trunk_host, no trunk


def test_pjsip_trunk_from_the_settings():
    _, files = rendered(trunk_host="sip.operator.example:5062", trunk_username="0755-12319", trunk_password="trunk-pw")
    objects = pjsip_objects(files)
    reg = objects[("trunk-registration", "registration")]
    assert reg.one("server_uri") == "sip:sip.operator.example:5062"
    assert reg.one("client_uri") == "sip:0755-12319@sip.operator.example:5062"
    auth = objects[(reg.one("outbound_auth"), "auth")]
    assert (auth.one("username"), auth.one("password")) == ("0755-12319", "trunk-pw")
    endpoint = objects[("trunk", "endpoint")]
    assert endpoint.one("context") == INBOUND_CONTEXT and endpoint.one("outbound_auth") == reg.one("outbound_auth")
    assert objects[("trunk", "identify")].one("match") == "sip.operator.example"
    assert objects[("trunk", "aor")].one("contact") == "sip:sip.operator.example:5062"
    assert "trunk-pw" not in files["extensions.conf"] + files["manager.conf"]
    # an operator trunk by address only: no registration, no auth
    _, files = rendered(trunk_host="203.0.113.9")
    objects = pjsip_objects(files)
    assert ("trunk-registration", "registration") not in objects and ("trunk", "endpoint") in objects
    assert objects[("trunk", "identify")].one("match") == "203.0.113.9"


def test_modules_load_what_the_dialplan_uses():
    _, files = rendered()
    modules = by_name(parse_conf(files["modules.conf"]))["modules"][0]
    load, noload = set(modules.values("load")), set(modules.values("noload"))
    assert modules.one("autoload") == "yes" and not load & noload
    app_module = {"Queue": "app_queue.so", "AGI": "res_agi.so", "MixMonitor": "app_mixmonitor.so",
                  "Record": "app_record.so", "Playback": "app_playback.so", "Dial": "app_dial.so",
                  "UserEvent": "app_userevent.so", "ExecIf": "app_exec.so"}
    builtin = {"Answer", "Set", "Goto", "GotoIf", "Hangup", "NoOp"}
    for step in steps(parse_dialplan(files["extensions.conf"])):
        assert step.app in builtin or app_module[step.app] in load, step.app
    assert {"chan_pjsip.so", "res_pjsip.so", "pbx_config.so", "res_musiconhold.so"} <= load
    assert "chan_sip.so" not in load and "chan_iax2.so" in noload


@pytest.mark.parametrize("overrides, words", [
    (dict(city_queue="x]\n[evil"), "city_queue"),
    (dict(city_queue="general"), "city_queue"),
    (dict(city_queue="s"), "city_queue"),
    (dict(ami_username="hot;line"), "ami_username"),
    (dict(ami_secret="abc\n[evil]\nread = all"), "ami_secret"),
    (dict(ami_secret="abc;def"), "ami_secret"),
    (dict(ami_permit="0.0.0.0/0\n[x]"), "ami_permit"),
    (dict(agi_public_host="1.2.3.4/evil"), "agi_public_host"),
    (dict(agi_host="0.0.0.0"), "agi_public_host"),        # Asterisk cannot dial a listening address
    (dict(prompts_dir="/srv/prompts dir"), "prompts_dir"),
    (dict(asterisk_spool_dir="/var/spool/a,b"), "asterisk_spool_dir"),
    (dict(service_number="12319;x"), "service_number"),
    (dict(service_number="1001"), "service_number"),
    (dict(trunk_host="sip.example.org\n[x]"), "trunk_host"),
    (dict(trunk_host="sip.example.org", trunk_username="u", trunk_password="p\nq"), "trunk_password"),
    (dict(trunk_host="sip.example.org", trunk_username="u@x", trunk_password="p"), "trunk_username"),
])
def test_hostile_settings_are_refused(overrides, words):
    with pytest.raises(ConfigError, match=words):
        render_config(settings(**overrides))


def test_hostile_queue_names_from_rules_or_callers_are_refused(tmp_path):
    rules = tmp_path / "rules.csv"
    rules.write_text("district,street,category,request_type,unit,transfer\n*,*,*,*,{district},queue:evil]\n", "utf-8")
    with pytest.raises(ConfigError, match="evil"):
        render_config(settings(routing_rules_file=rules))
    with pytest.raises(ConfigError, match="queue"):
        render_config(settings(), queues=["ok", "bad name"])
    # Asterisk ignores '-' in extension names: two such queues would be one Redirect target
    with pytest.raises(ConfigError, match="differ only by '-'"):
        render_config(settings(), queues=["district440304"])


def test_extra_queues_and_another_city():
    s = settings(gazetteer="zhuhai")
    files = render_config(s, queues=["consult"])
    queues = queue_sections(files)
    gz = routing.load_gazetteer("zhuhai")
    assert set(queues) == {s.city_queue, "consult"} | {f"district-{code}" for code in gz.district_codes}
    assert "consult" in parse_dialplan(files["extensions.conf"])[TRANSFER_CONTEXT]
    assert not any("440307" in q or "dapeng" in q for q in queues)


def test_district_menu_codes_must_be_districts_of_the_gazetteer():
    with pytest.raises(ConfigError, match="ivr_district_menu.*440399"):
        render_config(settings(ivr_district_menu=["440304", "440399"]))
    with pytest.raises(ConfigError, match="ivr_district_menu"):
        render_config(settings(gazetteer="zhuhai", ivr_district_menu=["440304"]))


def test_default_secrets_are_rendered_with_a_loud_warning():
    s = load_settings()
    assert s.ami_secret == "change-me"
    warnings = config_warnings(s)
    assert any("ami_secret" in w for w in warnings) and any("agent_sip_secret" in w for w in warnings)
    files = render_config(s)
    assert "; !!! WARNING: ami_secret is still 'change-me'" in files["manager.conf"]
    assert "; !!! WARNING: agent_sip_secret is still 'change-me'" in files["pjsip.conf"]
    assert [w for w in config_warnings(settings()) if not w.startswith("musiconhold.conf")] == []
    strong = render_config(settings())
    assert "WARNING" not in "".join(text for name, text in strong.items() if name != "musiconhold.conf")


def test_write_config_writes_every_file(tmp_path):
    s = settings()
    out = tmp_path / "etc" / "asterisk"
    paths = write_config(s, out)
    assert sorted(p.name for p in paths) == sorted(CONFIG_FILES)
    expected = render_config(s)
    for path in paths:
        assert path.parent == out and path.read_text("utf-8") == expected[path.name]
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in out.iterdir()) == sorted(CONFIG_FILES)    # no temporary files left


def test_each_asterisk_server_names_its_uniqueids():
    _, files = rendered(asterisk_systemname="szcc2")
    options = by_name(parse_conf(files["asterisk.conf"]))["options"][0]
    assert options.one("systemname") == "szcc2"
    with pytest.raises(Exception, match="asterisk_systemname"):
        rendered(asterisk_systemname="two words")
