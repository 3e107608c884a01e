"""`hotline …`: the one entry point. The only module of `hotline` that imports the parts above it."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from hotline.settings import SettingsError, get_settings

DEMO_USERS = [  # (username, role, unit, display name)
    ("agent", "agent", None, "坐席员（演示）"),
    ("dispatcher", "dispatcher", None, "派遣员（演示）"),
    ("futian", "district", "440304", "福田区平台（演示）"),
    ("supervisor", "supervisor", None, "班长（演示）"),
    ("admin", "admin", None, "管理员（演示）"),
]


def _db():
    from hotline.db import Database
    return Database(get_settings().database_url)


def cmd_db_upgrade(args) -> None:
    from hotline.migrate import upgrade
    upgrade(get_settings().database_url)
    print("database is at the newest schema")


def cmd_seed(args) -> None:
    from case_bridge import load_catalogue, seed_units
    from hotline.accounts import User, add_user, new_password
    from sqlalchemy import select
    cmd_db_upgrade(args)
    settings = get_settings()
    catalogue = load_catalogue(settings.categories_file)
    with _db().session() as session:
        units = seed_units(session)
        created = []
        if not args.no_demo_users:
            for username, role, unit, name in DEMO_USERS:
                if session.scalar(select(User).where(User.username == username)) is None:
                    password = new_password()
                    add_user(session, username, role, password, display_name=name, unit_code=unit)
                    created.append((username, role, password))
    print(f"handling units: {len(units)} created; category catalogue: {len(catalogue)} sub-classes")
    if created:
        print("\nDemo users (the passwords are shown this once; reset with `hotline users reset-password`):")
        for username, role, password in created:
            print(f"  {username:<12} {role:<11} {password}")
        print()


WORKER_STOP_SECONDS = 6


def _worker_command() -> list[str]:
    # -q: no banner (the worker's start is one log line); logging is set up by case_bridge.worker
    return [sys.executable, "-m", "celery", "-q", "-A", "case_bridge.worker", "worker", "-B",
            "--pool", "threads", "--concurrency", "4", "--loglevel", get_settings().log_level]


def cmd_run(args) -> None:
    """The embedded default: migrate, then the web app, FastAGI and the AMI link in this process,
    and a Celery worker + beat beside it."""
    settings = get_settings()
    cmd_db_upgrade(args)
    worker = None
    if not args.no_worker:
        worker = subprocess.Popen(_worker_command(), start_new_session=True)
    print(f"12319 hotline: http://{settings.web_host}:{settings.web_port}/  FastAGI {settings.agi_host}:"
          f"{settings.agi_port}  AMI → {settings.ami_host}:{settings.ami_port}  SMPP → {settings.smpp_host}:"
          f"{settings.smpp_port}  (Ctrl-C stops)", flush=True)
    try:
        asyncio.run(_serve(settings, web=True, agi=True, ami=True, sms=True))
    finally:
        if worker is not None and worker.poll() is None:
            # warm shutdown: running effects finish, queued ones go back to the broker; a service manager
            # gives a stop about 10 s, so an effect still running after WORKER_STOP_SECONDS is cut off and
            # its row is taken up again when its lease runs out (its idempotency key stops a repeat)
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=WORKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        print("stopped", flush=True)


async def _serve(settings, web: bool, agi: bool, ami: bool, sms: bool = False) -> None:
    """Web app, telephony and/or the SMS channel on one event loop and one in-process bus."""
    import uvicorn
    from agent_ui import create_app
    from case_bridge import CaseCore
    from hotline.bus import InProcessBus
    from hotline.db import Database
    from ivr import Telephony
    from sms import SmsService
    bus = InProcessBus()
    db = Database(settings.database_url)
    core = CaseCore(settings)
    calendar_warning = core.calendar.warning(core.now().astimezone(settings.zone).date())
    if calendar_warning:
        logging.getLogger("hotline").warning(calendar_warning)
    telephony = Telephony(settings, db, bus, core=core, agi=agi, ami=ami) if (agi or ami) else None
    if telephony is not None:
        await telephony.start()
    sms_service = SmsService(settings, db, core, bus) if sms else None
    if sms_service is not None:
        await sms_service.start()
    try:
        if web:
            app = create_app(settings, db=db, bus=bus, core=core)
            app.state.telephony = telephony
            app.state.sms = sms_service
            config = uvicorn.Config(app, host=settings.web_host, port=settings.web_port, log_config=None)
            await _uvicorn_server_class()(config).serve()
        else:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    finally:
        if sms_service is not None:
            await sms_service.stop()
        if telephony is not None:
            await telephony.stop()


def _uvicorn_server_class():
    import contextlib

    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn re-raises Ctrl-C after its own shutdown, which would cut telephony's shutdown short."""

        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()
    return QuietServer


def cmd_agi(args) -> None:
    asyncio.run(_serve(get_settings(), web=False, agi=True, ami=False))


def cmd_ami(args) -> None:
    asyncio.run(_serve(get_settings(), web=False, agi=False, ami=True))


def cmd_sms(args) -> None:
    asyncio.run(_serve(get_settings(), web=False, agi=False, ami=False, sms=True))


def cmd_prompts_build(args) -> None:
    from tqdm import tqdm

    from ivr import PromptError, build_prompts
    settings = get_settings()
    bar = lambda items, total, label: tqdm(items, total=total, desc=label, unit=" prompts")  # noqa: E731
    try:
        report = build_prompts(settings, force=args.force, progress=bar)
    except PromptError as exc:
        sys.exit(f"prompts not built: {exc}")
    print(report.summary())
    print(f"prompt files: {settings.prompts_dir}")
    if not report.ok:
        sys.exit(1)


def cmd_asterisk_config(args) -> None:
    from asterisk_conf import ConfigError, agent_sip_password, config_warnings, write_config
    settings = get_settings()
    try:
        paths = write_config(settings, args.out, queues=args.queue)
    except ConfigError as exc:
        sys.exit(f"asterisk configuration not written: {exc}")
    for warning in config_warnings(settings):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {', '.join(p.name for p in paths)} to {args.out}")
    if args.agent_passwords:
        for ext in settings.agent_extensions:
            print(f"  agent {ext}: SIP user {ext}, password {agent_sip_password(settings.agent_sip_secret, ext)}")


def cmd_simulate_call(args) -> None:
    """Drive our FastAGI server as Asterisk would (the tests' peer), printing what the caller hears."""
    from ivr import simulate_call
    keys = [k.strip() for k in args.keys.split(",")] if args.keys else []
    try:
        lines = asyncio.run(simulate_call(get_settings(), args.script, args.caller, keys, case_number=args.case,
                                          hangup_after=args.hangup_after, write=args.write))
    except (OSError, ValueError) as exc:
        sys.exit(f"simulate-call: {exc}")
    print("\n".join(lines))


def cmd_web(args) -> None:
    import uvicorn
    from agent_ui import create_app
    s = get_settings()
    uvicorn.run(create_app(s), host=s.web_host, port=s.web_port, log_config=None)


def cmd_worker(args) -> None:
    os.execv(sys.executable, _worker_command())


def _password(args) -> str:
    from hotline.accounts import new_password
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n")
    if sys.stdin.isatty():
        return getpass.getpass("password (empty: generate one): ") or new_password()
    return new_password()


def cmd_users(args) -> None:
    from hotline.accounts import AccountError, Role, User, add_user, get_user, hash_password, set_active
    from sqlalchemy import select
    try:
        with _db().session() as session:
            if args.users_cmd == "add":
                password = _password(args)
                add_user(session, args.username, args.role, password, args.name or "", args.unit)
                print(f"user {args.username} ({args.role}) added; password: {password}")
            elif args.users_cmd == "set-role":
                if args.role not in Role.__members__:
                    raise AccountError(f"unknown role {args.role!r}")
                user = get_user(session, args.username)
                if args.role == "district" and not (args.unit or user.unit_code):
                    raise AccountError("a district user needs --unit")
                user.role, user.unit_code = args.role, args.unit or (user.unit_code if args.role == "district" else None)
                print(f"user {args.username} is now {args.role}")
            elif args.users_cmd == "reset-password":
                user = get_user(session, args.username)
                password = _password(args)
                user.password_hash = hash_password(password)
                print(f"password of {args.username} reset: {password}")
            elif args.users_cmd == "api-key":
                _api_key(session, args)
            elif args.users_cmd in ("disable", "enable"):
                set_active(session, args.username, args.users_cmd == "enable")
                print(f"user {args.username} {args.users_cmd}d")
            elif args.users_cmd == "list":
                for u in session.scalars(select(User).order_by(User.username)):
                    print(f"{u.username:<16} {u.role:<11} {u.unit_code or '':<10} {'active' if u.active else 'disabled'}")
    except AccountError as exc:
        sys.exit(f"error: {exc}")


def _api_key(session, args) -> None:
    """`users api-key NAME --name LABEL` issues; `users api-key list [NAME]`; `users api-key revoke ID`."""
    from hotline.accounts import AccountError, get_user, issue_api_key, list_api_keys, revoke_api_key
    words = args.words
    if words and words[0] == "list":
        for key, user in list_api_keys(session, words[1] if len(words) > 1 else None):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            print(f"#{key.id:<5} {user.username:<16} {user.role:<11} {key.name:<24} "
                  f"{key.created_at:%Y-%m-%d} {state}")
    elif words and words[0] == "revoke":
        if len(words) != 2 or not words[1].lstrip("#").isdigit():
            raise AccountError("usage: hotline users api-key revoke ID (see `hotline users api-key list`)")
        key = revoke_api_key(session, int(words[1].lstrip("#")))
        print(f"api key #{key.id} ({key.name}) revoked; it stops working within 30 s")
    elif len(words) == 1 and args.name:
        key = issue_api_key(session, get_user(session, words[0]), args.name)
        print(f"api key for {words[0]} ({args.name}), shown once:\n{key}")
    else:
        raise AccountError("usage: hotline users api-key NAME --name LABEL | list [NAME] | revoke ID")


def cmd_case_show(args) -> None:
    from case_bridge import CaseCore, CaseNotFound
    from hotline.accounts import Actor
    settings = get_settings()
    core = CaseCore(settings)
    admin = Actor(role="supervisor", username="cli")
    from ivr import calls_of_case
    try:
        with _db().session() as session:
            case = core.get_case(session, args.number, admin)
            out = core.to_out(session, case, admin)
            calls = [(c.started_at, c.direction, c.caller, c.intent, c.queue, c.agent, c.outcome, c.talk_seconds,
                      c.recording_path) for c in calls_of_case(session, case.id)]
    except CaseNotFound as exc:
        sys.exit(f"error: {exc}")
    zone = settings.zone
    print(f"{out.number}  {out.state_label}  {out.request_type}/{out.urgency}  {out.category_name or '未分类'}")
    print(f"  地址: {out.address_text or '-'}  区: {out.district_code or '未定位'}  单位: {out.handling_unit or '-'}")
    print(f"  来电: {out.caller_phone or '-'}  时限: {out.time_limit or '-'}  到期: "
          f"{out.due_at.astimezone(zone):%Y-%m-%d %H:%M}" if out.due_at else f"  来电: {out.caller_phone or '-'}")
    print(f"  描述: {out.description}")
    for started, direction, caller, intent, queue, agent, outcome, talk, recording in calls:
        when = f"{started.astimezone(zone):%Y-%m-%d %H:%M:%S}" if started else "-"
        print(f"  通话: {when} {direction} {caller or '-'} 意图 {intent or '-'} 队列 {queue or '-'} 座席 {agent or '-'} "
              f"{outcome or '-'} 通话 {talk or 0:.0f} 秒 录音 {recording or '-'}")
    print("  时间线:")
    for e in out.timeline:
        move = f"{e.from_state or '-'} → {e.to_state or '-'}"
        print(f"    {e.at.astimezone(zone):%Y-%m-%d %H:%M:%S}  {e.action:<20} {move:<24} {e.actor}({e.actor_role})  {e.note}")


def cmd_kpi(args) -> None:
    from case_bridge import KPI_LABELS, kpi_report
    parse = lambda t: datetime.fromisoformat(t).replace(tzinfo=get_settings().zone)  # noqa: E731
    with _db().session() as session:
        rows = kpi_report(session, args.group_by, parse(args.start), parse(args.end))
    for r in rows:
        d = r.as_dict()
        print(d.pop("group") or "（未定位）")
        for k, v in d.items():
            print(f"  {KPI_LABELS[k]:<12} {v if v is not None else '-'}")


def _router():
    """The router as the product runs it: settings' gazetteer and rules, plus confirmed placements."""
    from sqlalchemy import inspect

    from case_bridge import Router
    router = Router(get_settings())
    db = _db()
    if inspect(db.engine).has_table("address_evidence"):
        with db.session() as session:
            router.learn_confirmed(session)
    return router


def cmd_geocode(args) -> None:
    import json
    router = _router()
    p = router.locate(None, args.text)
    if args.json:
        print(json.dumps(p.as_dict(), ensure_ascii=False, indent=2))
        return
    if not p.placed:
        print(f"未定位: {p.reason}")
        return
    names = " ".join(p.names.get(c, "") for c in (p.district_code, p.street_code, p.community_code) if c)
    mark = "可自动派遣" if p.confident(router.threshold) else "需派遣员确认"
    print(f"{names}  置信度 {p.confidence:.4f}（{mark}，阈值 {router.threshold}）")
    print(f"  区 {p.district_code}  街道 {p.street_code or '-'}  社区 {p.community_code or '-'}  网格 {p.grid_code or '-'}"
          f"  坐标 {','.join(map(str, p.point)) if p.point else '-'}")
    print("  依据:")
    for e in p.evidence:
        print(f"    「{e['text']}」→ {e['name']}  ({e['kind']}, {e['how']}, 权重 {e['weight']})")
    for a in p.alternatives:
        print(f"  备选: {a.name} {a.district_code}  {a.confidence:.4f}")
    route = router.rules.route(p.district_code, p.street_code)
    print(f"  承办单位 {route.unit_code}  转接 {route.transfer_target}  ({route.rule})")


def cmd_routing_import(args) -> None:
    from tqdm import tqdm

    import routing
    from case_bridge import INSTALLED_INDEX
    dest = get_settings().data_dir / INSTALLED_INDEX if args.output is None else args.output
    bar = lambda items, total, label: tqdm(items, total=total, desc=label, unit=" rows")  # noqa: E731
    try:
        gz = routing.import_gazetteer(args.folder, dest, progress=bar)
    except (routing.GazetteerError, routing.DivisionError) as exc:
        sys.exit(f"gazetteer not imported: {exc}")
    size = dest.stat().st_size
    print(f"{gz.name} ({gz.code}): {len(gz.district_codes)} districts, {len(gz.divisions)} divisions, "
          f"{len(gz.places)} names; index {dest} ({size / 1e6:.1f} MB)")
    if args.output is None:
        print("installed: the hotline uses it from the next start (unless the gazetteer setting names another)")


def cmd_routing_eval(args) -> None:
    from routing import EvalFileError, evaluate_labelled, format_report, read_labelled
    router = _router()
    threshold = router.threshold if args.threshold is None else args.threshold
    try:
        columns = args.column or ["address"]
        for column in columns:
            rows = read_labelled(args.file, router.gazetteer, column)
            report = evaluate_labelled(router.gazetteer, rows, threshold)
            print(format_report(router.gazetteer, report, threshold, f"== {args.file} [{column}]"))
    except EvalFileError as exc:
        sys.exit(str(exc))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotline", description="12319 城建服务热线 contact centre")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="migrate and start web app + Celery worker + beat (embedded default)")
    run.add_argument("--no-worker", action="store_true", help="start the web app only")
    run.set_defaults(fn=cmd_run)
    sub.add_parser("web", help="the web app only (scale mode)").set_defaults(fn=cmd_web)
    sub.add_parser("agi", help="the FastAGI server only (scale mode)").set_defaults(fn=cmd_agi)
    sub.add_parser("ami", help="the AMI link and call recorder only (scale mode)").set_defaults(fn=cmd_ami)
    sub.add_parser("sms", help="the SMS channel only: SMPP link, MO, receipts, the sms outbox (scale mode)"
                   ).set_defaults(fn=cmd_sms)
    sim = sub.add_parser("simulate-call", help="play a call into our FastAGI flows without a PBX")
    sim.add_argument("--from", dest="caller", default="13800138000", help="the caller's number")
    sim.add_argument("--keys", default="", help="what the caller presses at each prompt, comma-separated "
                                                "(e.g. 2,# ; an empty item is silence)")
    sim.add_argument("--script", choices=["inbound", "survey"], default="inbound")
    sim.add_argument("--case", help="survey: the case the callback is about")
    sim.add_argument("--hangup-after", type=int, help="the caller hangs up after this many commands")
    sim.add_argument("--write", action="store_true", help="run on the configured database (default: a throw-away "
                                                          "copy, so trying the IVR changes nothing)")
    sim.set_defaults(fn=cmd_simulate_call)
    sub.add_parser("worker", help="a Celery worker with beat (scale mode)").set_defaults(fn=cmd_worker)
    db = sub.add_parser("db", help="database").add_subparsers(dest="db_cmd", required=True)
    db.add_parser("upgrade", help="migrate to the newest schema").set_defaults(fn=cmd_db_upgrade)
    seed = sub.add_parser("seed", help="load reference data and demo users (idempotent)")
    seed.add_argument("--no-demo-users", action="store_true")
    seed.set_defaults(fn=cmd_seed)

    users_p = sub.add_parser("users", help="users and roles")
    users = users_p.add_subparsers(dest="users_cmd", required=True)
    add = users.add_parser("add")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["agent", "dispatcher", "district", "supervisor", "admin", "client"],
                     help="client: an outside system (Open311) that sees only what it submitted")
    add.add_argument("--unit", help="handling unit code (district users)")
    add.add_argument("--name")
    add.add_argument("--password-stdin", action="store_true")
    sr = users.add_parser("set-role")
    sr.add_argument("username")
    sr.add_argument("role")
    sr.add_argument("--unit")
    rp = users.add_parser("reset-password")
    rp.add_argument("username")
    rp.add_argument("--password-stdin", action="store_true")
    key = users.add_parser("api-key", help="API keys: NAME --name LABEL issues one; list [NAME]; revoke ID")
    key.add_argument("words", nargs="+", metavar="NAME | list [NAME] | revoke ID")
    key.add_argument("--name", help="what the key is for (when issuing)")
    users.add_parser("list")
    for verb in ("disable", "enable"):
        onoff = users.add_parser(verb, help=f"{verb} a user (a disabled user's keys and sign-ins stop working)")
        onoff.add_argument("username")
    users_p.set_defaults(fn=cmd_users)

    case = sub.add_parser("case", help="cases").add_subparsers(dest="case_cmd", required=True)
    show = case.add_parser("show", help="a case with its timeline")
    show.add_argument("number")
    show.set_defaults(fn=cmd_case_show)

    kpi = sub.add_parser("kpi", help="CJ/T 292 indicators over a period")
    kpi.add_argument("--group-by", choices=["district", "unit", "category"], default="district")
    kpi.add_argument("--start", required=True, help="local date or date-time, e.g. 2026-11-01")
    kpi.add_argument("--end", required=True)
    kpi.set_defaults(fn=cmd_kpi)

    geo = sub.add_parser("geocode", help="place an address: district, 街道, 社区, confidence and why")
    geo.add_argument("text")
    geo.add_argument("--json", action="store_true")
    geo.set_defaults(fn=cmd_geocode)
    rt = sub.add_parser("routing", help="gazetteer import and evaluation").add_subparsers(dest="routing_cmd",
                                                                                         required=True)
    imp = rt.add_parser("import", help="check and compile a city's gazetteer folder (see routing/GAZETTEER.md)")
    imp.add_argument("folder")
    imp.add_argument("--output", type=Path, help="write the index here instead of installing it in data_dir")
    imp.set_defaults(fn=cmd_routing_import)
    ev = rt.add_parser("eval", help="accuracy, precision above the threshold, coverage on labelled addresses")
    ev.add_argument("file", help="CSV with an address column and a district column (name or code)")
    ev.add_argument("--column", action="append", help="address column(s) to evaluate (default: address)")
    ev.add_argument("--threshold", type=float)
    ev.set_defaults(fn=cmd_routing_eval)
    pr = sub.add_parser("prompts", help="the IVR prompt files").add_subparsers(dest="prompts_cmd", required=True)
    pb = pr.add_parser("build", help="synthesise the prompt catalogue (espeak-ng), or convert studio recordings, "
                                     "to 8 kHz mono WAV in prompts_dir")
    pb.add_argument("--force", action="store_true", help="rebuild prompts that are up to date too")
    pb.set_defaults(fn=cmd_prompts_build)
    ast = sub.add_parser("asterisk-config", help="write the Asterisk configuration (pjsip, extensions, queues, "
                                                 "manager, musiconhold, modules) rendered from the settings")
    ast.add_argument("--out", type=Path, required=True, help="folder for the .conf files (e.g. /etc/asterisk)")
    ast.add_argument("--queue", action="append", help="an extra queue to define besides the city and district "
                                                      "queues (repeatable)")
    ast.add_argument("--agent-passwords", action="store_true", help="also print each agent extension's SIP password")
    ast.set_defaults(fn=cmd_asterisk_config)
    return p


def main(argv: list[str] | None = None) -> None:
    from hotline.logs import configure_logging
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        sys.exit(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    args.fn(args)


if __name__ == "__main__":
    main()
