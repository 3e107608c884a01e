"""Render the Asterisk 22 configuration (chan_pjsip, app_queue, FastAGI, AMI) from the settings.

Every value that comes from the settings is checked here before a template sees it: a name that
could end a line, open a section (`[`/`]`) or start a comment (`;`) is refused with ConfigError
naming the setting. The templates (Jinja2, StrictUndefined) only place values that passed.

Contexts (the AMI client and the FastAGI flows depend on these names):

    hotline-inbound    calls from the operator trunk: record, FastAGI `inbound`, then the queue
    hotline-transfer   AMI Redirect target: one extension per queue (`Exten: <queue name>`)
    hotline-survey     AMI Originate target for satisfaction callbacks (`Exten: s`), FastAGI `survey`
    hotline-voicemail  leave-a-message path (queue timed out / empty / full; intent `closed`)
    hotline-agents     calls from the agents' phones: each other's extension and the service number

Queues: the city queue (every agent extension a static member) plus every `queue:` transfer target
the routing rules produce for a district of the gazetteer (no static members; agents are added at
run time with QueueAdd) plus any extra names the caller passes.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2

import routing
from hotline.settings import Settings

CONFIG_FILES = ("asterisk.conf", "pjsip.conf", "extensions.conf", "queues.conf", "manager.conf", "musiconhold.conf", "modules.conf")

INBOUND_CONTEXT = "hotline-inbound"
TRANSFER_CONTEXT = "hotline-transfer"    # AMI Redirect: Context hotline-transfer, Exten <queue>, Priority 1
SURVEY_CONTEXT = "hotline-survey"        # AMI Originate: Context hotline-survey, Exten s, Priority 1
SURVEY_EXTEN = "s"
VOICEMAIL_CONTEXT = "hotline-voicemail"
AGENT_CONTEXT = "hotline-agents"
TRUNK_ENDPOINT = "trunk"                 # survey_dial's default PJSIP/{number}@trunk names it

# QUEUESTATUS values after which the caller is offered the leave-a-message path. An answered call
# never comes back from Queue() (no `c` option); UNKNOWN is what a queue that does not exist gives.
VOICEMAIL_QUEUE_STATUSES = ("TIMEOUT", "FULL", "JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL", "LEAVEUNAVAIL", "UNKNOWN")
VOICEMAIL_MAX_SECONDS = 120
VOICEMAIL_SILENCE_SECONDS = 5

# AMI rights of the hotline user: the action and event classes the client uses, nothing more
# (Asterisk allows an action when the user's write classes share one bit with the action's).
AMI_READ = ("system", "call", "agent", "user", "dialplan")
AMI_WRITE = ("call", "agent", "originate", "reporting")

INSECURE_DEFAULT = "change-me"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_RESERVED_SECTIONS = {"general", "globals", "modules", "default"}
_SPECIAL_EXTENS = {"s", "i", "h", "t", "T", "e", "a", "o"}
_SIP_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_PATH = re.compile(r"/[A-Za-z0-9_./+@-]*")
_DIGITS = re.compile(r"\d{3,20}")
_TEMPLATE_FIELD = re.compile(r"\{(district|street)\}")


class ConfigError(ValueError):
    """A setting cannot go into the Asterisk configuration; the message names it and says why."""


# ---------------------------------------------------------------------------------- checks
def _name(setting: str, value: object, *, queue: bool = False) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigError(f"{setting} {value!r} cannot be used in the Asterisk configuration: it must be 1 to 64 "
                          "letters, digits, '_' or '-', starting with a letter or digit (no spaces, line breaks, "
                          "';', '[' or ']')")
    if value.lower() in _RESERVED_SECTIONS:
        raise ConfigError(f"{setting} {value!r} is a reserved section name in Asterisk's configuration files")
    if queue and value in _SPECIAL_EXTENS:
        raise ConfigError(f"{setting} {value!r}: a queue is also an extension of {TRANSFER_CONTEXT}, and "
                          f"{value!r} is one of Asterisk's special extensions")
    return value


def _secret(setting: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{setting} is empty: Asterisk needs a secret here")
    if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value) or ";" in value:
        raise ConfigError(f"{setting} cannot be written to an Asterisk configuration file: it contains a line break, "
                          "a control character, ';' (which starts a comment) or leading/trailing spaces")
    if len(value) > 128:
        raise ConfigError(f"{setting} is longer than 128 characters")
    return value


def _ip(setting: str, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError(f"{setting} {value!r} must be an IP address (Asterisk binds the AMI listener to it)"
                          ) from None


def _host(setting: str, value: str) -> str:
    """A host name or an IP address to connect to; IPv6 comes back in brackets, ready for a URI."""
    try:
        addr = ipaddress.ip_address(value.strip("[]") if value.startswith("[") and value.endswith("]") else value)
    except ValueError:
        addr = None
    if addr is not None:
        if addr.is_unspecified:
            raise ConfigError(f"{setting} {value!r} is a listening address, not one Asterisk can connect to: "
                              "set the address of the machine (for the FastAGI server: agi_public_host)")
        return f"[{addr}]" if addr.version == 6 else str(addr)
    if not _HOSTNAME.fullmatch(value):
        raise ConfigError(f"{setting} {value!r} is neither an IP address nor a host name")
    return value


def _host_port(setting: str, value: str) -> tuple[str, int | None]:
    m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?", value)
    if not m:
        # a bare IPv6 address (no brackets, no port)
        return _host(setting, value), None
    host, port = _host(setting, m.group(1)), m.group(2)
    if port is not None and not 1 <= int(port) <= 65535:
        raise ConfigError(f"{setting} {value!r}: port {port} is not 1–65535")
    return host, int(port) if port else None


def _networks(setting: str, value: str) -> list[str]:
    out = []
    for part in (p.strip() for p in value.split(",")):
        try:
            net = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ConfigError(f"{setting}: {part!r} is not an address or network (e.g. 127.0.0.1/255.255.255.255, "
                              "10.0.0.0/24); separate several with commas") from None
        out.append(f"{net.network_address}/{net.netmask}" if net.version == 4 else str(net))
    return out


def _abs_path(setting: str, value: Path | str | None) -> str:
    if value is None or str(value) == "":
        raise ConfigError(f"{setting} is not set")
    path = os.path.abspath(os.fspath(value))
    if not _PATH.fullmatch(path):
        raise ConfigError(f"{setting} {path!r} cannot be used by the dialplan: use only letters, digits and "
                          "'_' '.' '/' '+' '@' '-' in the path (a space, ',', '&', '$', ';' or a line break would "
                          "split or change the application arguments)")
    return path.rstrip("/") or "/"


def agent_sip_password(secret: str, extension: str) -> str:
    """The SIP password of an agent extension: HMAC-SHA256(key=agent_sip_secret, message=extension), hex, 20 chars."""
    return hmac.new(secret.encode("utf-8"), extension.encode("utf-8"), hashlib.sha256).hexdigest()[:20]


def _warnings(settings: Settings) -> list[tuple[str, str]]:
    out = []
    if settings.ami_secret == INSECURE_DEFAULT:
        out.append(("manager.conf", ("ami_secret is still 'change-me': anyone who can reach the AMI port can log in "
                                     f"as {settings.ami_username!r} and place calls; set HOTLINE_AMI_SECRET and "
                                     "render again")))
    elif len(settings.ami_secret) < 12:
        out.append(("manager.conf", "ami_secret is shorter than 12 characters"))
    if settings.agent_sip_secret == INSECURE_DEFAULT:
        out.append(("pjsip.conf", ("agent_sip_secret is still 'change-me': the agents' SIP passwords derived from "
                                   "it can be computed by anyone who has read this code; set "
                                   "HOTLINE_AGENT_SIP_SECRET and render again")))
    try:
        public_ami = not ipaddress.ip_address(settings.ami_host).is_loopback
    except ValueError:
        public_ami = False   # not an address: render_config refuses it
    if public_ami:
        out.append(("manager.conf", (f"the AMI listens on {settings.ami_host}, not on loopback: AMI is plain "
                                     "text, keep that network private (ami_permit limits who may log in)")))
    moh = Path(os.path.abspath(settings.prompts_dir)) / "moh" if settings.prompts_dir else None
    if moh is not None and not (moh.is_dir() and any(f.suffix.lower() in (".wav", ".gsm", ".sln", ".ulaw")
                                                      for f in moh.iterdir())):
        out.append(("musiconhold.conf", (f"the hold music folder {moh} has no sound file: callers waiting in a "
                                         "queue hear silence; run `hotline prompts build`")))
    if settings.trunk_host and not settings.trunk_username:
        out.append(("pjsip.conf", ("trunk_host is set without trunk_username: no registration; calls are "
                                   "accepted from the trunk host by its address alone")))
    return out


def config_warnings(settings: Settings) -> list[str]:
    """What is legal but unsafe in these settings, for the CLI to print (each file carries its own as comments).

    A default secret is a warning, not an error, so that a development PBX on loopback can be set up
    with the defaults; production settings must change both.
    """
    return [f"{file}: {text}" for file, text in _warnings(settings)]


# --------------------------------------------------------------------------------- queues
def _gazetteer_source(settings: Settings) -> str:
    return routing.gazetteer_source(settings.gazetteer, settings.data_dir)


def _load_gazetteer(settings: Settings) -> routing.Gazetteer:
    where = _gazetteer_source(settings)
    try:
        return routing.load_configured(where)
    except (routing.GazetteerError, routing.DivisionError, OSError) as exc:
        raise ConfigError(f"gazetteer {where!r} cannot be read: {exc}") from None


def _rules_file(settings: Settings) -> Path | None:
    return routing.configured_rules_file(_gazetteer_source(settings), settings.routing_rules_file)


def _load_rules(settings: Settings) -> routing.Rules:
    try:
        return routing.load_rules(_rules_file(settings))
    except routing.RulesError as exc:
        raise ConfigError(f"routing rules: {exc}") from None


def _one_of(pattern: str, value: str) -> bool:
    return pattern == "*" or value in pattern.split("|")


def routed_queues(gazetteer: routing.Gazetteer, rules: routing.Rules) -> list[str]:
    """Every queue a `queue:` transfer target of the rules names for a district (or 街道) of the gazetteer.

    Categories and request types are not looked at, so a rule that only some cases reach still
    gets its queue: a superset of what `rules.route` can return for a placed case.
    """
    found: set[str] = set()
    for district in gazetteer.district_codes:
        streets = [None] + [d.code for d in gazetteer.divisions.values()
                            if d.level == "street" and d.parent_code == district]
        for rule in rules.rules:
            if not rule.transfer.startswith("queue:") or not _one_of(rule.district, district):
                continue
            for street in streets:
                if not _one_of(rule.street, street or ""):
                    continue
                fill = {"district": district, "street": street or district}
                target = _TEMPLATE_FIELD.sub(lambda m, fill=fill: fill[m.group(1)], rule.transfer)
                found.add(target.partition(":")[2])
    for name in found:
        _name(f"the routing rules' ({rules.where}) transfer target queue", name, queue=True)
    return sorted(found)


@dataclass(frozen=True)
class QueuePlan:
    city: str
    routed: tuple[str, ...]      # from the routing rules (district queues)
    extra: tuple[str, ...]       # passed by the caller of render_config

    @property
    def all(self) -> list[str]:
        return [self.city, *self.routed, *self.extra]


def plan_queues(settings: Settings, queues: Iterable[str] | None = None, *,
                gazetteer: routing.Gazetteer | None = None, rules: routing.Rules | None = None) -> QueuePlan:
    """The queues queues.conf defines, after checking ivr_district_menu against the gazetteer."""
    gz = gazetteer or _load_gazetteer(settings)
    city = _name("city_queue", settings.city_queue, queue=True)
    unknown = [c for c in settings.ivr_district_menu if c not in gz.district_codes]
    if unknown:
        raise ConfigError(f"ivr_district_menu names {', '.join(map(repr, unknown))}, not a district of the gazetteer "
                          f"{gz.name} ({', '.join(gz.district_codes)})")
    routed = [q for q in routed_queues(gz, rules or _load_rules(settings)) if q != city]
    if isinstance(queues, str):
        queues = [queues]
    extra: list[str] = []
    for q in queues or ():
        _name("queue", q, queue=True)
        if q != city and q not in routed and q not in extra:
            extra.append(q)
    # Asterisk ignores '-' when it compares extension names: two queues that differ only by '-'
    # would be one extension of hotline-transfer
    seen: dict[str, str] = {}
    for q in [city, *routed, *extra]:
        key = q.replace("-", "")
        if key in seen:
            raise ConfigError(f"queues {seen[key]!r} and {q!r} differ only by '-', which Asterisk ignores in "
                              "extension names")
        seen[key] = q
    return QueuePlan(city, tuple(routed), tuple(extra))


# --------------------------------------------------------------------------------- render
_env = jinja2.Environment(
    loader=jinja2.PackageLoader("asterisk_conf", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _context(settings: Settings, plan: QueuePlan) -> dict[str, object]:
    service_number = settings.service_number
    if not isinstance(service_number, str) or not _DIGITS.fullmatch(service_number):
        raise ConfigError(f"service_number {service_number!r} must be 3 to 20 digits")
    if service_number in settings.agent_extensions:
        raise ConfigError(f"service_number {service_number} is also an agent extension")
    if len(set(settings.agent_extensions)) != len(settings.agent_extensions):
        raise ConfigError("agent_extensions lists an extension twice")
    agents = [{"ext": ext, "password": agent_sip_password(settings.agent_sip_secret, ext)}
              for ext in settings.agent_extensions]   # the settings already hold them to 3–8 digits

    # the settings fill agi_public_host from agi_host when it is not given
    agi_host = _host("agi_public_host", settings.agi_public_host or settings.agi_host)
    prompts_dir = _abs_path("prompts_dir", settings.prompts_dir)
    spool_dir = _abs_path("asterisk_spool_dir", settings.asterisk_spool_dir)

    trunk = None
    if settings.trunk_host:
        host, port = _host_port("trunk_host", settings.trunk_host)
        username = settings.trunk_username
        if username and not _SIP_USER.fullmatch(username):
            raise ConfigError(f"trunk_username {username!r} must be letters, digits and '_' '.' '+' '-'")
        password = _secret("trunk_password", settings.trunk_password) if username else ""
        trunk = {"host": f"{host}:{port}" if port else host, "domain": host, "username": username,
                 "password": password}

    ami_user = _name("ami_username", settings.ami_username)
    prompt = {pid: f"{prompts_dir}/{pid}" for pid in (
        "voicemail", "voicemail_thanks", "transfer_district", "closed_hours", "queue_youarenext", "queue_thereare",
        "queue_callswaiting", "queue_holdtime", "queue_minutes", "queue_thankyou", "queue_periodic")}
    return {
        "service_number": service_number,
        "systemname": settings.asterisk_systemname,
        "timezone": settings.timezone,   # recordings are filed by the hotline's local date, not the PBX host's
        "agents": agents,
        "trunk": trunk,
        "trunk_endpoint": TRUNK_ENDPOINT,
        "agi": f"agi://{agi_host}:{settings.agi_port}",
        "spool_dir": spool_dir,
        "prompt": prompt,
        "moh_dir": f"{prompts_dir}/moh",
        "queues": plan,
        "max_wait": settings.queue_max_wait_seconds,
        "wrapup": settings.queue_wrapup_seconds,
        "announce": settings.queue_announce_seconds,
        "vm_condition": " | ".join(f'"${{QUEUESTATUS}}" = "{s}"' for s in VOICEMAIL_QUEUE_STATUSES),
        "vm_max": VOICEMAIL_MAX_SECONDS,
        "vm_silence": VOICEMAIL_SILENCE_SECONDS,
        "ctx": {"inbound": INBOUND_CONTEXT, "transfer": TRANSFER_CONTEXT, "survey": SURVEY_CONTEXT,
                "voicemail": VOICEMAIL_CONTEXT, "agents": AGENT_CONTEXT},
        "survey_exten": SURVEY_EXTEN,
        "ami": {"host": _ip("ami_host", settings.ami_host), "port": settings.ami_port, "user": ami_user,
                "secret": _secret("ami_secret", settings.ami_secret),
                "permit": _networks("ami_permit", settings.ami_permit),
                "read": ",".join(AMI_READ), "write": ",".join(AMI_WRITE)},
    }


def render_config(settings: Settings, queues: Iterable[str] | None = None, *,
                  gazetteer: routing.Gazetteer | None = None, rules: routing.Rules | None = None) -> dict[str, str]:
    """File name → text of every Asterisk file we own; raises ConfigError naming the setting at fault.

    `queues`: extra queue names to define besides the city queue and the routing rules' queues.
    `gazetteer`, `rules`: use these instead of the ones the settings name.
    """
    plan = plan_queues(settings, queues, gazetteer=gazetteer, rules=rules)
    ctx = _context(settings, plan)
    warnings = _warnings(settings)
    return {name: _env.get_template(f"{name}.j2").render(
                **ctx, file=name, warnings=[text for file, text in warnings if file == name])
            for name in CONFIG_FILES}


def write_config(settings: Settings, out_dir: Path | str, queues: Iterable[str] | None = None) -> list[Path]:
    """Render and write every file into `out_dir` (created if missing); mode 0640, as they hold secrets."""
    files = render_config(settings, queues)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        target = out / name
        tmp = target.with_name(f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o640)
        tmp.replace(target)
        written.append(target)
    return written
