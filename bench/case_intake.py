"""Case intake throughput: cases created per second through the HTTP API, against a bare insert.

For each backend (SQLite, PostgreSQL) this

1. prepares a fresh database with the real CLI (`hotline db upgrade`, `hotline seed
   --no-demo-users`, `hotline users add`, `hotline users api-key`);
2. starts the real web app (`uvicorn agent_ui:create_app --factory`) in its own process
   on 127.0.0.1, and drives POST /api/v1/cases with an httpx AsyncClient at a fixed
   concurrency. Every case is a filed, auto-dispatched 投诉/求助 with a mobile caller, so each
   creation writes 1 cases row, 3 case_events rows (create, file, dispatch) and 2 outbox
   rows (the SMS receipt, and the SMS telling the citizen the case was dispatched); the
   database is then checked to hold exactly that;
3. measures, in the same run and on a second fresh database of the same backend, a bare
   insert of the same rows (cases row, its 3 case_events rows, its 2 outbox rows — same
   columns and value shapes) with SQLAlchemy Core, one transaction per case, from as many
   threads as the API run's concurrency.

It prints cases/s, p50/p99 latency and API/bare ratios, the CPU each process spent per
case, and writes everything to bench/results/case_intake.json.

    .venv/bin/python -m bench.case_intake [--cases N] [--concurrency C] [--backend sqlite|postgresql|both]
                                          [--workers W] [--no-access-log] [--uvicorn-arg=--loop=asyncio]

PostgreSQL is started with tests.support.postgres.PostgresServer(durable=True) (fsync and
synchronous_commit on, as in production) and removed at the end; when it cannot be
started the benchmark says why and runs SQLite only.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "case_intake.json"
TARGET_PG = 300.0  # cases/s on PostgreSQL, stated by the issue
BENCH_USER = "bench-agent"
BENCH_PASSWORD = "bench-password-12319"

# ---------------------------------------------------------------------------- payloads

DISTRICTS = {  # code: places in it (address_text)
    "440303": ["罗湖区东门步行街西坊口", "罗湖区人民南路国贸大厦东侧", "罗湖区翠竹路水贝珠宝城北门"],
    "440304": ["福田区莲花路与彩田路交叉口", "福田区华强北路赛格广场南侧", "福田区景田北街景田市场门口"],
    "440305": ["南山区科技园南区高新南七道", "南山区南头古城南门", "南山区后海大道与创业路交叉口"],
    "440306": ["宝安区西乡街道固戍地铁站C出口", "宝安区新安街道宝城22区", "宝安区沙井街道新沙路"],
    "440307": ["龙岗区布吉街道布吉老街", "龙岗区坂田街道五和大道雅园路口", "龙岗区龙城广场西侧"],
    "440308": ["盐田区沙头角海关附近", "盐田区海山路盐田港后方", "盐田区大梅沙海滨栈道入口"],
    "440309": ["龙华区民治街道民治大道", "龙华区观澜古墟", "龙华区大浪街道华旺路"],
    "440310": ["坪山区坪山大道坪山广场", "坪山区马峦街道沙坣社区", "坪山区坑梓街道人民西路"],
    "440311": ["光明区公明街道公明广场", "光明区光明大街与华夏路交叉口", "光明区凤凰街道塘家社区"],
}

CATEGORIES = {  # key: (request type, description templates)
    "E0102": ("投诉", [
        "{place}路边有一大堆生活垃圾，已经堆了三天没人清理，天气热味道很大，苍蝇蚊子很多，希望尽快派人处理。",
        "{place}附近的垃圾桶早就满了，垃圾散落一地，晚上还有老鼠出没，居民意见很大，请环卫部门尽快清运。",
    ]),
    "E0505": ("投诉", [
        "{place}门口每天早上七点到九点都有私家车乱停，占用人行道和盲道，行人只能走机动车道，非常危险。",
        "{place}有几辆货车长期停在消防通道上，已经好几天没开走了，万一发生火灾消防车进不来，请尽快处理。",
    ]),
    "C0101": ("求助", [
        "{place}人行道上的自来水井盖松动了，踩上去会翻转，晚上光线暗看不清，已经有老人差点摔倒，请尽快修复。",
        "{place}的自来水井盖破损缺了一角，下雨天积水看不见，电动车经过很容易出事，麻烦尽快更换。",
    ]),
    "E0301": ("投诉", [
        "{place}附近的工地每天晚上十一点以后还在施工，打桩机噪音很大，小孩和老人都睡不着觉，请管一管。",
        "{place}旁边的工地凌晨还在运渣土，车辆进出鸣笛，噪音严重影响周边居民休息，希望执法部门到场查处。",
    ]),
    "E0104": ("投诉", [
        "{place}路面上有大片油污和泥浆，像是渣土车撒落的，行人和电动车经过容易滑倒，请安排清扫。",
    ]),
}
CALLERS = ["张先生", "李女士", "王先生", "陈女士", "刘先生", "黄女士", "周先生", "吴女士", None]


@dataclass
class Intake:
    """One case to create: the JSON body and its Idempotency-Key."""
    key: str
    body: dict[str, Any]


def make_intakes(n: int, tag: str, seed: int) -> list[Intake]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        category = rng.choice(list(CATEGORIES))
        request_type, templates = CATEGORIES[category]
        district = rng.choice(list(DISTRICTS))
        place = rng.choice(DISTRICTS[district])
        body = {
            "channel": "phone", "request_type": request_type, "urgency": "一般", "category_key": category,
            "description": rng.choice(templates).format(place=place),
            "caller_phone": f"138{rng.randrange(10**8):08d}", "caller_name": rng.choice(CALLERS),
            "address_text": place, "district_code": district, "placement_confidence": 0.95,
            # no lon/lat and no grid_code: duplicate detection stays out of the measurement
        }
        out.append(Intake(key=f"bench-{tag}-{i:06d}", body=body))
    return out


# ---------------------------------------------------------------------------- measuring


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int | None) -> float:
    """CPU seconds (user + system) of a process and all its descendants, including reaped ones."""
    if root is None:
        return 0.0
    procs: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        procs[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))  # ppid; utime stime cutime cstime
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            total += procs[pid][1]
        todo.extend(children.get(pid, []))
    return total / _TICK


def machine_ticks() -> tuple[int, int, int]:
    """(total, busy, iowait) jiffies of all CPUs since boot."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    total = sum(parts[:8])
    idle, iowait = parts[3], parts[4]
    return total, total - idle - iowait, iowait


class CpuMeter:
    """CPU spent by the bench process (client), the app server and the database server over a phase."""

    def __init__(self, server_pid: int | None, db_pid: int | None) -> None:
        self.server_pid, self.db_pid = server_pid, db_pid

    def __enter__(self) -> "CpuMeter":
        self.t0 = time.perf_counter()
        self.c0, self.s0, self.d0 = time.process_time(), tree_cpu(self.server_pid), tree_cpu(self.db_pid)
        self.m0 = machine_ticks()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0
        self.client = time.process_time() - self.c0
        self.server = tree_cpu(self.server_pid) - self.s0
        self.db = tree_cpu(self.db_pid) - self.d0
        m1 = machine_ticks()
        span = max(1, m1[0] - self.m0[0])
        self.busy = (m1[1] - self.m0[1]) / span
        self.iowait = (m1[2] - self.m0[2]) / span
        # CPU used by processes that are not part of this benchmark (other jobs on the machine)
        ours = self.client + self.server + self.db
        self.others = max(0.0, ((m1[1] - self.m0[1]) / _TICK - ours) / (self.wall * (os.cpu_count() or 1)))

    def as_dict(self, n: int) -> dict[str, float]:
        per = lambda s: round(s * 1000 / max(1, n), 3)  # noqa: E731
        return {"client_cpu_ms_per_case": per(self.client), "app_cpu_ms_per_case": per(self.server),
                "db_cpu_ms_per_case": per(self.db), "machine_busy": round(self.busy, 3),
                "machine_iowait": round(self.iowait, 3), "other_processes_busy": round(self.others, 3),
                "cpu_count": os.cpu_count()}


@dataclass
class Run:
    backend: str
    mode: str  # "api" | "bare insert"
    cases: int
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(repr=False, default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    verified: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {"backend": self.backend, "mode": self.mode, "cases": self.cases, "concurrency": self.concurrency,
                "ok": len(self.latencies_ms), "errors": self.errors, "seconds": round(self.seconds, 3),
                "cases_per_s": round(self.rate, 1), "p50_ms": round(percentile(self.latencies_ms, 50), 2),
                "p90_ms": round(percentile(self.latencies_ms, 90), 2),
                "p99_ms": round(percentile(self.latencies_ms, 99), 2),
                "max_ms": round(max(self.latencies_ms, default=float("nan")), 2),
                "cpu": self.cpu, "verified": self.verified, **self.notes}


# ---------------------------------------------------------------------------- setup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(db_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATABASE_URL=db_url, HOTLINE_DATA_DIR=str(data_dir),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    return env


def hotline_cli(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "hotline.cli", *args], env=env, cwd=cwd, input=stdin,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"hotline {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc.stdout


def prepare_database(db_url: str, data_dir: Path) -> str:
    """Migrate, seed units, add the bench agent; returns its API key."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = child_env(db_url, data_dir)
    hotline_cli(env, data_dir, "db", "upgrade")
    hotline_cli(env, data_dir, "seed", "--no-demo-users")
    hotline_cli(env, data_dir, "users", "add", BENCH_USER, "--role", "agent", "--password-stdin",
                stdin=BENCH_PASSWORD + "\n")
    out = hotline_cli(env, data_dir, "users", "api-key", BENCH_USER, "--name", "bench")
    return out.strip().splitlines()[-1].strip()


def count_rows(db_url: str) -> dict[str, int]:
    from case_bridge.models import Case, CaseEvent, OutboxItem
    from hotline.db import Database
    db = Database(db_url)
    try:
        with db.session() as s:
            return {
                "cases": s.scalar(select(func.count()).select_from(Case)),
                "cases_dispatched": s.scalar(select(func.count()).select_from(Case).where(Case.state == "dispatched")),
                "case_events": s.scalar(select(func.count()).select_from(CaseEvent)),
                "outbox": s.scalar(select(func.count()).select_from(OutboxItem)),
                "outbox_sms_receipt": s.scalar(select(func.count()).select_from(OutboxItem).where(
                    OutboxItem.kind == "sms", OutboxItem.idempotency_key.like("sms:receipt:%"))),
                "outbox_sms_dispatched": s.scalar(select(func.count()).select_from(OutboxItem).where(
                    OutboxItem.kind == "sms", OutboxItem.idempotency_key.like("sms:dispatched:%"))),
            }
    finally:
        db.dispose()


def verify(db_url: str, n: int, label: str) -> dict[str, Any]:
    got = count_rows(db_url)
    want = {"cases": n, "cases_dispatched": n, "case_events": 3 * n, "outbox": 2 * n, "outbox_sms_receipt": n,
            "outbox_sms_dispatched": n}
    ok = got == want
    shown = ", ".join(f"{k} {got[k]}/{want[k]}" for k in want)
    print(f"  verify {label}: {shown}  -> {'OK' if ok else 'MISMATCH'}", flush=True)
    return {"ok": ok, "expected": want, "found": got}


# ---------------------------------------------------------------------------- API run


class Server:
    """The web app under uvicorn in its own process group."""

    def __init__(self, db_url: str, data_dir: Path, workers: int, access_log: bool, extra: list[str],
                 py_spy: Path | None = None, app: str = "agent_ui:create_app") -> None:
        self.port = free_port()
        self.log_path = data_dir / "uvicorn.log"
        cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", str(workers)]
        cmd += ["--log-level", "info"] if access_log else ["--no-access-log", "--log-level", "warning"]
        self.cmd = cmd + extra
        self.py_spy = py_spy
        launch = self.cmd
        if py_spy is not None:  # sample the server's Python stacks (threads holding the GIL: CPU, not waiting)
            fmt = {".txt": "raw", ".json": "speedscope"}.get(py_spy.suffix, "flamegraph")
            spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
            if spy is None:
                raise SystemExit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
            launch = [spy, "record", "--gil", "--subprocesses",
                      "--rate", "250", "--format", fmt, "-o", str(py_spy), "--", *self.cmd]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(launch, env=child_env(db_url, data_dir), cwd=data_dir, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)  # not listening yet
                continue
            time.sleep(0.2)
        raise RuntimeError(f"uvicorn did not answer /healthz within {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            # our own process group (start_new_session); SIGINT also makes py-spy write its profile
            os.killpg(self.proc.pid, signal.SIGINT if self.py_spy else signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


async def _drive(base_url: str, api_key: str, intakes: list[Intake], warmup: int, concurrency: int,
                 meter: CpuMeter) -> tuple[list[float], dict[str, int], dict[str, Any]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    errors: dict[str, int] = {}
    first_error: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120,
                                 headers={"Authorization": f"Bearer {api_key}"}) as client:
        async def phase(batch: list[Intake]) -> list[float]:
            todo = iter(batch)
            latencies: list[float] = []

            async def worker() -> None:
                for item in todo:  # one shared iterator: a closed loop of `concurrency` requests in flight
                    t0 = time.perf_counter()
                    r = await client.post("/api/v1/cases", json=item.body, headers={"Idempotency-Key": item.key})
                    dt = (time.perf_counter() - t0) * 1000
                    if r.status_code == 201:
                        latencies.append(dt)
                    else:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                        first_error.setdefault("body", r.text[:500])

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return latencies

        # warm-up: connections, SQL compilation caches, the first case's response is checked in full
        r = await client.post("/api/v1/cases", json=intakes[0].body, headers={"Idempotency-Key": intakes[0].key})
        if r.status_code != 201:
            raise RuntimeError(f"first POST /api/v1/cases answered {r.status_code}: {r.text[:500]}")
        shape = r.json()
        sample = {"state": shape["state"], "timeline": [e["action"] for e in shape["timeline"]],
                  "handling_unit": shape["handling_unit"], "time_limit": shape["time_limit"]}
        if shape["state"] != "dispatched" or len(shape["timeline"]) != 3:
            raise RuntimeError(f"the bench case was not filed and auto-dispatched: {sample}")
        await phase(intakes[1:warmup])
        with meter:
            latencies = await phase(intakes[warmup:])
    if first_error:
        errors["first_error"] = first_error["body"]  # type: ignore[assignment]
    return latencies, errors, sample


def run_loop(coro):
    try:
        import uvloop
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except ImportError:
        return asyncio.run(coro)


def run_api(backend: str, db_url: str, work: Path, args, db_pid: int | None) -> Run:
    data_dir = work / f"{backend}-api"
    print(f"[{backend}] api: preparing database with the hotline CLI", flush=True)
    api_key = prepare_database(db_url, data_dir)
    extra = [a for arg in args.uvicorn_arg for a in arg.split()]
    profile = None
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
        profile = args.py_spy.resolve() / f"server-{backend}.{args.py_spy_format}"
    server = Server(db_url, data_dir, args.workers, not args.no_access_log, extra, profile, args.app)
    try:
        server.wait_ready()
        print(f"[{backend}] api: uvicorn pid {server.proc.pid} on {server.base_url} "
              f"({' '.join(server.cmd[2:])}); {args.warmup} warm-up + {args.cases} measured cases "
              f"at concurrency {args.concurrency}", flush=True)
        intakes = make_intakes(args.warmup + args.cases, f"{backend}-{int(time.time())}", args.seed)
        meter = CpuMeter(server.proc.pid, db_pid)
        latencies, errors, sample = run_loop(_drive(server.base_url, api_key, intakes, args.warmup,
                                                    args.concurrency, meter))
    finally:
        server.stop()
    run = Run(backend, "api", args.cases, args.concurrency, meter.wall, latencies, errors, meter.as_dict(args.cases),
              notes={"first_response": sample, "uvicorn": " ".join(server.cmd[2:]), "warmup": args.warmup,
                     "workers": args.workers, "profiled": bool(profile)})
    run.notes["cpu_bound_ceiling_cases_per_s"] = ceilings(run)
    if errors:
        print(f"  ERRORS: {errors}", flush=True)
    run.verified = verify(db_url, args.warmup + args.cases, f"{backend} api ({args.warmup} warm-up + "
                                                            f"{args.cases} measured)")
    return run


# ---------------------------------------------------------------------------- bare-insert baseline


def run_bare(backend: str, db_url: str, work: Path, args, db_pid: int | None) -> Run:
    """The same rows with SQLAlchemy Core, one transaction per case, `concurrency` threads."""
    from case_bridge import CaseCore
    from case_bridge.models import Case, CaseEvent, OutboxItem
    from hotline.accounts import User
    from hotline.db import make_engine, utcnow
    from hotline.settings import load_settings

    data_dir = work / f"{backend}-bare"
    print(f"[{backend}] bare insert: preparing database with the hotline CLI", flush=True)
    prepare_database(db_url, data_dir)
    settings = load_settings(database_url=db_url, data_dir=data_dir)
    core = CaseCore(settings)
    # the app's engine settings (WAL, BEGIN IMMEDIATE on SQLite), a pool as large as the concurrency, no pre-ping
    engine = make_engine(db_url, pool_size=args.concurrency, max_overflow=0, pool_pre_ping=False)
    cases_t, events_t, outbox_t = Case.__table__, CaseEvent.__table__, OutboxItem.__table__
    with engine.begin() as conn:
        agent_id = conn.scalar(select(User.id).where(User.username == BENCH_USER))

    intakes = make_intakes(args.warmup + args.cases, f"{backend}-bare-{int(time.time())}", args.seed)
    day = datetime.now(settings.zone).strftime("%Y%m%d")
    seqs = {key: itertools.count(1) for key in CATEGORIES}
    limits = {key: core.limits.limit_for(key, "一般") for key in CATEGORIES}
    numbers = [f"{it.body['category_key']}{day}{next(seqs[it.body['category_key']]):04d}" for it in intakes]

    def one(i: int) -> float:
        item, number = intakes[i], numbers[i]
        b = item.body
        limit = limits[b["category_key"]]
        t0 = time.perf_counter()
        now = utcnow()
        phone = "+86" + b["caller_phone"]
        with engine.begin() as conn:
            case_id = conn.execute(insert(cases_t).returning(cases_t.c.id), {
                "number": number, "idempotency_key": item.key, "channel": b["channel"],
                "request_type": b["request_type"], "urgency": b["urgency"], "category_key": b["category_key"],
                "description": b["description"], "caller_phone": phone, "caller_name": b["caller_name"],
                "address_text": b["address_text"], "district_code": b["district_code"], "street_code": None,
                "community_code": None, "grid_code": None, "lon": None, "lat": None,
                "placement_confidence": b["placement_confidence"], "handling_unit_code": b["district_code"],
                "state": "dispatched", "created_at": now, "updated_at": now, "filed_at": now, "dispatched_at": now,
                "closed_at": None, "limit_minutes": limit.minutes, "limit_basis": limit.basis,
                "limit_label": limit.label, "clock_started_at": now, "extension_minutes": 0,
                "suspended_minutes": 0.0, "suspended_since": None, "due_at": now + timedelta(minutes=limit.minutes),
                "urged_count": 0, "rework_count": 0, "satisfaction": None, "reopen_requested": False,
                "pending_extension_minutes": None,
            }).scalar_one()
            conn.execute(insert(events_t), [
                {"case_id": case_id, "at": now, "actor_id": agent_id, "actor": BENCH_USER, "actor_role": "agent",
                 "action": "create", "from_state": None, "to_state": "intake", "note": "",
                 "data": {"channel": b["channel"], "request_type": b["request_type"]}},
                {"case_id": case_id, "at": now, "actor_id": agent_id, "actor": BENCH_USER, "actor_role": "agent",
                 "action": "file", "from_state": "intake", "to_state": "filed", "note": "", "data": {}},
            ])
            dispatch_id = conn.execute(insert(events_t).returning(events_t.c.id), {
                "case_id": case_id, "at": now, "actor_id": None, "actor": "system", "actor_role": "system",
                "action": "dispatch", "from_state": "filed", "to_state": "dispatched", "note": "定位可信，自动派遣",
                "data": {"unit": b["district_code"], "limit": limit.label}}).scalar_one()
            conn.execute(insert(outbox_t), [{
                "kind": "sms", "payload": {"to": phone, "template": template, "case_number": number},
                "idempotency_key": key, "case_id": case_id, "status": "pending",
                "due_at": now, "available_at": now, "attempts": 0, "lease_until": None, "claim_token": None,
                "last_error": "", "result": {}, "created_at": now, "done_at": None,
            } for template, key in (("receipt", f"sms:receipt:{case_id}"),
                                    ("dispatched", f"sms:dispatched:{case_id}:{dispatch_id}"))])
        return (time.perf_counter() - t0) * 1000

    print(f"[{backend}] bare insert: {args.warmup} warm-up + {args.cases} measured cases from "
          f"{args.concurrency} threads", flush=True)
    errors: dict[str, int] = {}
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(one, range(args.warmup)))
        meter = CpuMeter(None, db_pid)
        with meter:
            latencies = list(pool.map(one, range(args.warmup, args.warmup + args.cases)))
    engine.dispose()
    run = Run(backend, "bare insert", args.cases, args.concurrency, meter.wall, latencies, errors,
              meter.as_dict(args.cases), notes={"warmup": args.warmup})
    run.verified = verify(db_url, args.warmup + args.cases, f"{backend} bare insert")
    return run


# ---------------------------------------------------------------------------- report


def ceilings(r: Run) -> dict[str, float]:
    """Cases/s if the measured CPU per case were the only limit (no waiting, no other jobs)."""
    c, cpus = r.cpu, os.cpu_count() or 1
    server = c["app_cpu_ms_per_case"] + c["db_cpu_ms_per_case"]
    out = {"with_client": round(cpus * 1000 / (server + c["client_cpu_ms_per_case"]), 1),
           "server_only": round(cpus * 1000 / server, 1)}
    if r.notes.get("workers") == 1:  # one process: its GIL-bound Python uses at most one CPU
        out["one_worker"] = round(min(out["with_client"], 1000 / c["app_cpu_ms_per_case"]), 1)
    return out


def print_table(runs: list[Run]) -> None:
    bare = {r.backend: r for r in runs if r.mode == "bare insert"}
    head = (f"{'backend':<11}{'mode':<13}{'cases':>7}{'conc':>6}{'cases/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'ratio cases/s':>15}{'ratio p50':>11}{'verified':>10}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in runs:
        base = bare.get(r.backend)
        if r.mode == "api" and base and base.rate:
            ratio = f"{r.rate / base.rate:.3f}"
            p50 = f"{percentile(r.latencies_ms, 50) / percentile(base.latencies_ms, 50):.1f}x"
        else:
            ratio, p50 = "(1)", "(1)"
        print(f"{r.backend:<11}{r.mode:<13}{r.cases:>7}{r.concurrency:>6}{r.rate:>10.1f}"
              f"{percentile(r.latencies_ms, 50):>9.1f}{percentile(r.latencies_ms, 99):>9.1f}{ratio:>15}{p50:>11}"
              f"{'yes' if r.verified.get('ok') else 'NO':>10}")
    print("(ratio cases/s = API / bare insert throughput; ratio p50 = API p50 / bare insert p50)")
    head = (f"{'backend':<11}{'mode':<13}{'bench/client':>13}{'app':>8}{'database':>10}{'sum':>8}"
            f"{'  machine busy':>14}{'iowait':>8}{'other jobs':>12}")
    print("\nCPU ms per case (bench/client = this process: httpx client or the bare-insert threads)")
    print(head + "\n" + "-" * len(head))
    for r in runs:
        c = r.cpu
        total = c["client_cpu_ms_per_case"] + c["app_cpu_ms_per_case"] + c["db_cpu_ms_per_case"]
        db = f"{c['db_cpu_ms_per_case']:.2f}" if r.backend == "postgresql" else "in app"
        print(f"{r.backend:<11}{r.mode:<13}{c['client_cpu_ms_per_case']:>13.2f}{c['app_cpu_ms_per_case']:>8.2f}"
              f"{db:>10}{total:>8.2f}{c['machine_busy'] * 100:>13.0f}%{c['machine_iowait'] * 100:>7.0f}%"
              f"{c['other_processes_busy'] * 100:>11.0f}%")
    print(f"(machine busy: share of all {os.cpu_count()} CPUs in use during the measured phase; other jobs: the part "
          f"of it used by processes outside this benchmark — if it is not ~0 %, the figures are depressed)")
    for r in runs:
        if r.mode == "api":
            c = ceilings(r)
            print(f"{r.backend} api, CPU-bound ceiling on {os.cpu_count()} CPUs: {c['with_client']:.0f} cases/s with "
                  f"this client on the machine, {c['server_only']:.0f} cases/s for app + database alone"
                  + (f" (one uvicorn worker alone: {c['one_worker']:.0f})" if c.get("one_worker") else ""))
    for r in runs:
        if r.backend == "postgresql" and r.mode == "api":
            verdict = "meets" if r.rate >= TARGET_PG else "BELOW"
            print(f"\nPostgreSQL API: {r.rate:.1f} cases/s — {verdict} the target of {TARGET_PG:.0f} cases/s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.case_intake", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=2000, help="measured cases per run (default 2000)")
    p.add_argument("--warmup", type=int, default=100, help="warm-up cases per run, not timed (default 100)")
    p.add_argument("--concurrency", type=int, default=16, help="requests / transactions in flight (default 16)")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--mode", choices=["api", "bare", "both"], default="both", help="what to measure (default both)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1, as `hotline web`)")
    p.add_argument("--no-access-log", action="store_true", help="start uvicorn with --no-access-log")
    p.add_argument("--uvicorn-arg", action="append", default=[], metavar="ARG",
                   help="extra uvicorn argument(s), e.g. --uvicorn-arg=--loop=asyncio (repeatable)")
    p.add_argument("--app", default="agent_ui:create_app", metavar="MODULE:FACTORY",
                   help="the app factory uvicorn starts (default agent_ui:create_app); another one, importable "
                        "through PYTHONPATH, lets you A/B a patched app")
    p.add_argument("--py-spy", type=Path, metavar="DIR",
                   help="run the server under `py-spy record --gil` (pip install py-spy) and write its profile to "
                        "DIR/server-BACKEND.{svg,txt,json}; slows the server, so its figures are not comparable")
    p.add_argument("--py-spy-format", choices=["svg", "txt", "json"], default="svg",
                   help="svg flame graph, txt collapsed stacks, json speedscope (default svg)")
    p.add_argument("--seed", type=int, default=12319, help="random seed of the payloads")
    p.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = p.parse_args(argv)
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (the first case's response is checked)")

    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    runs: list[Run] = []
    env_info: dict[str, Any] = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                                "cpu_count": os.cpu_count(), "machine": platform.machine()}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="hotline-bench-") as tmp:
        work = Path(tmp)
        for backend in backends:
            pg = None
            db_pid = None
            try:
                if backend == "sqlite":
                    api_url, bare_url = (f"sqlite:///{work / f'sqlite-{m}' / 'hotline.db'}" for m in ("api", "bare"))
                else:
                    from tests.support.postgres import PostgresServer, PostgresUnavailable
                    try:
                        pg = PostgresServer(durable=True).start()
                    except PostgresUnavailable as exc:
                        print(f"[postgresql] PostgreSQL unavailable, running SQLite only: {exc}", flush=True)
                        skipped["postgresql"] = str(exc)
                        if "sqlite" not in backends:
                            backends.append("sqlite")
                        continue
                    api_url, bare_url = pg.create_database("bench_api"), pg.create_database("bench_bare")
                    db_pid = int((pg.dir / "data" / "postmaster.pid").read_text().split()[0])
                    env_info["postgresql"] = f"{pg.bin} (durable: fsync and synchronous_commit on)"
                if args.mode in ("api", "both"):
                    runs.append(run_api(backend, api_url, work, args, db_pid))
                if args.mode in ("bare", "both"):
                    runs.append(run_bare(backend, bare_url, work, args, db_pid))
            finally:
                if pg is not None:
                    pg.stop()
    if not runs:
        print("nothing was measured")
        return 1
    print_table(runs)
    for backend, why in skipped.items():
        print(f"\n{backend}: not measured — {why}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    bare = {r.backend: r for r in runs if r.mode == "bare insert"}
    report = {
        "benchmark": "case_intake", "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "-m", "bench.case_intake", *(argv if argv is not None else sys.argv[1:])]),
        "environment": env_info, "skipped": skipped, "target_postgresql_cases_per_s": TARGET_PG,
        "runs": [r.summary() for r in runs],
        "ratios": {b: {"cases_per_s": round(r.rate / bare[b].rate, 4),
                       "p50": round(percentile(r.latencies_ms, 50) / percentile(bare[b].latencies_ms, 50), 2),
                       "p99": round(percentile(r.latencies_ms, 99) / percentile(bare[b].latencies_ms, 99), 2)}
                   for b, r in ((r.backend, r) for r in runs if r.mode == "api") if b in bare and bare[b].rate},
    }
    args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(f"\nresults written to {args.json}")
    return 0 if all(r.verified.get("ok") and not r.errors for r in runs) else 2


if __name__ == "__main__":
    sys.exit(main())
