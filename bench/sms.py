"""SMS MT throughput: segments per second from the outbox through our SMPP connector to a fake SMSC,
against the raw smpp34 client in the same run; then the same with the SMSC dropping the link twice.

- **ours**: N "sms" outbox rows (a mix of 1-part "receipt" texts and 2- and 3-part "result" texts,
  each to its own mobile number, `essential`), enqueued in a freshly migrated and seeded database
  (SQLite by default), then `sms.service.SmsService` — one SMPP bind through `sms.smpp.SmppConnector`
  on smpp34, window 10, no rate cap — is started and timed until every row is done (outbox status):
  it claims the rows itself and performs them in its thread pool with `sms.outbound.Sender` (render,
  segment, submit part by part, store every acknowledged part);
- **raw smpp34**: the same parts (same bytes, destinations, esm_class, data_coding 8, registered
  delivery) submitted by a bare `smpp34.Client` with 10 submits in flight (an asyncio.Semaphore(10)),
  no database, no templates — the floor of this client library against this SMSC on this machine;
- **drops**: ours again, with the SMSC closing the connection after accepting the part at ~1/3 and
  ~2/3 of all parts (its `drop_after_submits` knob, cleared after the second drop). Two variants:
  `drop_before_resp=False` (the SMSC sends the submit_sm_resp of that part, then closes: nothing it
  accepted is unacknowledged — every message must arrive exactly once) and `drop_before_resp=True`
  (it closes before that resp: the part was accepted but we cannot know, so the retry sends it
  again — SMPP 3.4 has no way to avoid that duplicate; it is counted and shown, not a failure).

The SMSC is `tests.support.smsc.FakeSMSC` in its own process (pinned to one CPU; the product or the
raw client in this process, pinned to the other); it counts what it accepted, by part and by
reassembled text, and every run is checked against the expected parts and texts.

    .venv/bin/python -m bench.sms [--messages 2000] [--rounds 3] [--quick] [--postgres] [--no-drops]
                                  [--py-spy DIR] [--no-pin]

Rows whose submit failed when the link dropped back off for 30 s (case_bridge.outbox.BACKOFF); in the
drop runs a side loop makes pending rows due again every 0.2 s to keep the run short.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._meter import TICK, Child, Meter, cpu_split, pin, serve_until_stopped
from bench.case_intake import percentile, tree_cpu

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "sms.json"
SYSTEM_ID, PASSWORD = "hotline", "secret"
WINDOW = 10
TARGET_SEGMENTS = 1000.0        # segments/s, without a rate cap
SIDE_LOOP_SECONDS = 0.2         # drop runs: how often pending rows are made due again
RESULT_PHRASES = ("已安排环卫人员清运，现场已清理干净，并加强日常巡查。", "经核查，该路段井盖已更换，护栏已修复。",
                  "执法人员到场处理，责令工地夜间停止施工。", "已协调供水公司抢修，管道漏水点已封堵。",
                  "违停车辆已拖离，该路段将增设禁停标志。", "排水管网已疏通，积水已排除。")
MIX = (("receipt", 1, 0.5), ("result", 2, 0.25), ("result", 3, 0.25))   # (template, parts, share)


# ---------------------------------------------------------------------------- the messages


@dataclass
class Message:
    key: str                    # the outbox row's idempotency key
    to: str                     # E.164
    template: str
    values: dict[str, str]
    text: str                   # as the Sender renders it
    parts: list[Any]            # sms.segment.Segment, as the Sender cuts it
    addr: Any                   # sms.numbers.SmppAddress

    @property
    def payload(self) -> dict[str, Any]:
        return {"to": self.to, "template": self.template, "values": self.values, "essential": True}


def build_messages(n: int, seed: int, tag: str) -> list[Message]:
    """`n` messages, each with its own number and case number, so every text is distinct; the texts
    and parts are computed with the product's own templates and segmenter, as the Sender will."""
    from sms.numbers import smpp_address
    from sms.segment import segments
    from sms.templates import load_templates
    templates = load_templates()
    rng = random.Random(seed)
    out = []
    for i in range(n):
        roll, acc = rng.random(), 0.0
        template, want = MIX[-1][0], MIX[-1][1]
        for name, parts, share in MIX:
            acc += share
            if roll < acc:
                template, want = name, parts
                break
        number = f"E0102202611{i:06d}"
        values = {"number": number}
        if template == "result":   # 2 parts: 29–92 code units of result; 3 parts: clipped at 140
            size = rng.randint(40, 85) if want == 2 else rng.randint(100, 180)
            text = ""
            while len(text) < size:
                text += rng.choice(RESULT_PHRASES)
            values["result"] = text[:size]
        to = f"+86138{i + 10_000_000 * (seed % 10):08d}"
        rendered = templates.render(template, **values)
        if rendered.parts != want:
            raise RuntimeError(f"{template} with {values}: {rendered.parts} parts, wanted {want}")
        key = f"bench-sms-{tag}-{i:06d}"
        ref = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 256    # as Sender._prepare
        out.append(Message(key, to, template, values, rendered.text, segments(rendered.text, ref=ref),
                           smpp_address(to)))
    return out


# ---------------------------------------------------------------------------- the SMSC's process


def _smsc_main(conn: Any, cpu: int | None) -> None:
    pin(cpu)
    logging.disable(logging.WARNING)
    asyncio.run(_smsc_serve(conn))


async def _smsc_serve(conn: Any) -> None:
    from tests.support.smsc import FakeSMSC

    class BenchSMSC(FakeSMSC):
        """FakeSMSC whose drop_after_submits is cleared after `max_drops` drops, at the very PDU."""
        max_drops: int | None = None

        async def _on_submit(self, session, sequence, body):
            try:
                return await super()._on_submit(session, sequence, body)
            finally:
                if self.max_drops is not None and self.drops >= self.max_drops:
                    self.drop_after_submits = None

    state: dict[str, Any] = {"fake": None}
    busy: set[asyncio.Task] = set()

    async def fresh(knobs: dict[str, Any]) -> None:
        if state["fake"] is not None:
            await state["fake"].stop()
        fake = await BenchSMSC.start(system_id=SYSTEM_ID, password=PASSWORD)
        for name, value in knobs.items():
            setattr(fake, name, value)
        state["fake"] = fake
        conn.send(fake.port)

    def report() -> dict[str, Any]:
        fake = state["fake"]
        parts = [(s.destination_addr, s.udh.ref if s.udh else None, s.udh.total if s.udh else 1,
                  s.udh.seq if s.udh else 1, bytes(s.text_part), s.received_at) for s in fake.submits]
        return {"parts": parts, "texts": fake.texts(), "drops": fake.drops, "connections": fake.connections,
                "binds_ok": sum(1 for b in fake.binds if b.status == 0), "rejected": len(fake.rejected_submits),
                "errors": [e.reason for e in fake.errors][:5], "n_errors": len(fake.errors),
                "unanswered": fake.unanswered, "generic_nacks": len(fake.generic_nacks_received)}

    def command(what: tuple[str, Any]) -> None:
        op, arg = what
        if op == "fresh":
            task = asyncio.ensure_future(fresh(arg))
            busy.add(task)
            task.add_done_callback(busy.discard)
        elif op == "report":
            conn.send(report())

    await fresh({})   # Child waits for a first port
    await serve_until_stopped(conn, command)
    if state["fake"] is not None:
        await state["fake"].stop()


class SmscProcess(Child):
    def __init__(self, cpu: int | None) -> None:
        super().__init__(_smsc_main, (cpu,), "fake-smsc")

    def fresh(self, **knobs: Any) -> int:
        """A new FakeSMSC (the previous one stopped) with these knobs; its port."""
        self.conn.send(("fresh", knobs))
        if not self.conn.poll(10):
            raise RuntimeError("FakeSMSC did not restart")
        self.port = self.conn.recv()
        return self.port

    def report(self) -> dict[str, Any]:
        self.conn.send(("report", None))
        if not self.conn.poll(30):
            raise RuntimeError("FakeSMSC did not report")
        return self.conn.recv()


# ---------------------------------------------------------------------------- checking at the SMSC


def check_at_smsc(messages: list[Message], got: dict[str, Any]) -> dict[str, Any]:
    """Every part and every whole text exactly once? Counted from what the SMSC accepted."""
    expected: dict[tuple, bytes] = {}
    for m in messages:
        for p in m.parts:
            expected[(m.addr.addr, p.udh[3] if p.udh else None, p.total, p.seq)] = p.payload
    seen = Counter((d, ref, total, seq) for d, ref, total, seq, _, _ in got["parts"])
    wrong_bytes = sum(1 for d, ref, total, seq, data, _ in got["parts"]
                      if (d, ref, total, seq) in expected and expected[(d, ref, total, seq)] != data)
    want_texts = Counter((m.addr.addr, m.text) for m in messages)
    texts = Counter(got["texts"])
    dup_parts = [(k, c) for k, c in seen.items() if c > 1]
    return {
        "parts_expected": len(expected), "parts_accepted": len(got["parts"]),
        "parts_once": sum(1 for k in expected if seen.get(k) == 1),
        "parts_lost": sum(1 for k in expected if k not in seen),
        "parts_duplicated": sum(c - 1 for _, c in dup_parts),
        "parts_unexpected": sum(c for k, c in seen.items() if k not in expected),
        "parts_wrong_bytes": wrong_bytes,
        "duplicated_parts": [{"to": k[0], "ref": k[1], "total": k[2], "seq": k[3], "times": c} for k, c in dup_parts][:10],
        "messages_expected": len(messages),
        "messages_once": sum(1 for k in want_texts if texts.get(k) == 1),
        "messages_lost": sum(1 for k in want_texts if k not in texts),
        "messages_duplicated": sum(c - 1 for k, c in texts.items() if k in want_texts and c > 1),
        "messages_unexpected": sum(c for k, c in texts.items() if k not in want_texts),
        "smsc_drops": got["drops"], "smsc_connections": got["connections"], "smsc_binds": got["binds_ok"],
        "smsc_rejected": got["rejected"], "smsc_errors": got["n_errors"], "smsc_error_samples": got["errors"],
    }


def exact(c: dict[str, Any]) -> bool:
    return (c["parts_once"] == c["parts_expected"] == c["parts_accepted"] and c["messages_once"] == c["messages_expected"]
            and not c["parts_wrong_bytes"] and not c["messages_unexpected"])


# ---------------------------------------------------------------------------- where this process's CPU goes


def thread_cpu() -> dict[int, tuple[str, float, float]]:
    """tid → (thread name, user s, system s) of every thread of this process, from /proc."""
    out = {}
    python_names = {t.native_id: t.name for t in threading.enumerate()}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        out[int(tid)] = (python_names.get(int(tid), name), int(fields[11]) / TICK, int(fields[12]) / TICK)
    return out


def group_of(name: str, tid: int) -> str:
    if tid == os.getpid():
        return "event loop (main thread)"
    if name.startswith("sms"):
        return "SmsService pool (sms_*)"
    if name.startswith("asyncio"):
        return "asyncio.to_thread (claims)"
    if "tokio" in name or "smpp" in name:
        return "smpp34 (Rust runtime)"
    return f"other ({name})"


def cpu_by_thread(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """CPU seconds (user, system) per group of threads between two thread_cpu() readings."""
    groups: dict[str, dict[str, float]] = {}
    for tid, (name, user, system) in after.items():
        _, u0, s0 = before.get(tid, (name, 0.0, 0.0))
        g = groups.setdefault(group_of(name, tid), {"user": 0.0, "system": 0.0})
        g["user"] += user - u0
        g["system"] += system - s0
    return {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in sorted(groups.items()) if v["user"] + v["system"] > 0}


# ---------------------------------------------------------------------------- one run


@dataclass
class Run:
    kind: str                   # raw | ours | drop | drop_before_resp
    rows: int
    parts: int
    seconds: float              # start (bind included) → every row done / every part acknowledged
    own_cpu: float
    smsc_cpu: float
    other_jobs: float
    check: dict[str, Any]
    smsc_span: float            # first → last accepted submit, at the SMSC
    row_ms: list[float] = field(default_factory=list, repr=False)   # ours: perform() of a row, claim → done
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.parts / self.seconds

    def summary(self) -> dict[str, Any]:
        out = {"kind": self.kind, "rows": self.rows, "segments": self.parts, "seconds": round(self.seconds, 4),
               "segments_per_s": round(self.rate, 1), "rows_per_s": round(self.rows / self.seconds, 1),
               "smsc_segments_per_s": round(self.parts / self.smsc_span, 1) if self.smsc_span > 0 else None,
               "cpu_us_per_segment": round(self.own_cpu * 1e6 / self.parts, 1),
               "smsc_cpu_us_per_segment": round(self.smsc_cpu * 1e6 / self.parts, 1),
               "busy": round(self.own_cpu / self.seconds, 3), "other_jobs": round(self.other_jobs, 3),
               "exactly_once": exact(self.check), "check": self.check, **self.extra}
        if self.row_ms:
            out.update(row_p50_ms=round(percentile(self.row_ms, 50), 2), row_p99_ms=round(percentile(self.row_ms, 99), 2))
        return out


def summarize_py_spy(path: Path, top: int = 25) -> str:
    """Top frames of a `py-spy record --format raw` file (collapsed stacks): by own samples, and by
    samples that include the frame, over the threads of this process that held the GIL."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")[1:]   # the first is the thread
        total += int(n)
        if frames:
            own[frames[-1]] += int(n)
        for f in set(frames):
            incl[f] += int(n)
    if not total:
        return f"{path}: no samples"
    lines = [f"{path}: {total} samples holding the GIL", "  by own samples:"]
    lines += [f"    {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append("  including callees (product code and the SQLAlchemy entry points):")
    wanted = ("sms/", "case_bridge/", "hotline/", "bench/sms.py", "session.py", "base.py")
    lines += [f"    {n / total:6.1%}  {f}" for f, n in incl.most_common() if any(w in f for w in wanted)][:top]
    return "\n".join(lines)


def smsc_span(got: dict[str, Any]) -> float:
    at = [p[5] for p in got["parts"]]
    return (max(at) - min(at)) if len(at) > 1 else 0.0


async def run_raw(smsc: SmscProcess, messages: list[Message]) -> Run:
    """The floor: a bare smpp34 client, the same parts, 10 submits in flight."""
    import smpp34
    port = smsc.fresh()
    window = asyncio.Semaphore(WINDOW)
    failures: list[str] = []

    async def submit(session: Any, m: Message, part: Any) -> None:
        async with window:
            resp = await session.submit_sm(m.addr.addr, part.short_message, source_addr="12319",
                                           dest_addr_ton=m.addr.ton, dest_addr_npi=m.addr.npi,
                                           esm_class=part.esm_class, data_coding=8, registered_delivery=1)
        if not (resp.is_success and resp.message_id):
            failures.append(f"status 0x{resp.command_status:08X}")

    with Meter(smsc.proc.pid) as meter:
        client = smpp34.Client("127.0.0.1", port, SYSTEM_ID, PASSWORD, bind_type="TRX", window_size=WINDOW,
                               inbound_capacity=10_000)
        session = await client.connect()
        await asyncio.gather(*(submit(session, m, p) for m in messages for p in m.parts))
    await session.unbind()
    await client.stop()
    got = smsc.report()
    parts = sum(len(m.parts) for m in messages)
    return Run("raw", len(messages), parts, meter.wall, meter.own, meter.child, meter.others,
               check_at_smsc(messages, got), smsc_span(got), extra={"failures": len(failures)})


def fresh_database(template: str, workdir: Path, name: str, pg: Any) -> str:
    """A copy of the migrated, seeded template database; its URL."""
    if pg is not None:
        import psycopg
        with psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')
            c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return pg.url(name)
    target = workdir / f"{name}.db"
    shutil.copy(template, target)
    return f"sqlite:///{target}"


def prepare_template(workdir: Path, pg: Any) -> str:
    """Migrate (hotline.migrate.upgrade) and seed the units once; runs copy it."""
    from case_bridge import seed_units
    from hotline.db import Database
    from hotline.migrate import upgrade
    if pg is not None:
        url = pg.create_database("bench_sms_template")
        name = "bench_sms_template"
    else:
        name = str(workdir / "template.db")
        url = f"sqlite:///{name}"
    upgrade(url)
    db = Database(url)
    with db.session() as s:
        seed_units(s)
    db.dispose()
    return name


def postmaster_pid(pg: Any) -> int | None:
    if pg is None:
        return None
    try:
        return int((pg.dir / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def enqueue_all(db: Any, messages: list[Message]) -> None:
    from case_bridge import outbox
    with db.session() as s:
        for m in messages:
            outbox.enqueue(s, "sms", m.payload, key=m.key)


async def run_ours(smsc: SmscProcess, messages: list[Message], db_url: str, data_dir: Path, core: Any,
                   kind: str = "ours", drop_before_resp: bool = False, py_spy: Path | None = None,
                   db_pid: int | None = None) -> Run:
    from sqlalchemy import func, select, update

    from case_bridge import outbox
    from case_bridge.models import OutboxItem
    from hotline.db import Database, utcnow
    from hotline.settings import load_settings
    from sms.models import SmsMessage, SmsPart
    from sms.service import SmsService

    parts = sum(len(m.parts) for m in messages)
    knobs: dict[str, Any] = {}
    if kind != "ours":
        knobs = {"drop_after_submits": max(1, parts // 3), "drop_before_resp": drop_before_resp, "max_drops": 2}
    port = smsc.fresh(**knobs)
    settings = load_settings(data_dir=data_dir, database_url=db_url, smpp_port=port, smpp_password=PASSWORD,
                             smpp_system_id=SYSTEM_ID, smpp_window=WINDOW, smpp_rate_per_second=0)
    # never quiet (start == end: Sender.after_quiet_hours finds no quiet time; the rows are essential anyway)
    settings.sms_quiet_start = settings.sms_quiet_end
    db = Database(settings.database_url)
    enqueue_all(db, messages)

    # instrumentation only: time every outbox.perform (claim → done / failure) and note when the last
    # row is done; SmsService looks outbox.perform up at every call
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    row_ms: list[float] = []
    outcomes: Counter[str] = Counter()
    marks: dict[str, float] = {}
    lock = threading.Lock()
    original = outbox.perform

    def timed_perform(*args: Any, **kw: Any) -> str:
        t0 = time.perf_counter()
        status = original(*args, **kw)
        t1 = time.perf_counter()
        with lock:
            outcomes[status] += 1
            if status == "done":
                row_ms.append((t1 - t0) * 1000)
                if outcomes["done"] == len(messages):
                    marks["done"] = t1
                    loop.call_soon_threadsafe(finished.set)
        return status

    async def make_due() -> None:   # drop runs: failed rows back off 30 s; make them due now
        def due_now() -> int:
            with db.session() as s:
                now = utcnow()
                return s.execute(update(OutboxItem).where(OutboxItem.status == "pending", OutboxItem.available_at > now)
                                 .values(available_at=now)).rowcount
        made = 0
        while not finished.is_set():
            made += await asyncio.to_thread(due_now)
            with contextlib.suppress(TimeoutError):   # a tick of the side loop
                await asyncio.wait_for(finished.wait(), SIDE_LOOP_SECONDS)
        marks["made_due"] = made

    spy = None
    if py_spy is not None:
        py_spy.mkdir(parents=True, exist_ok=True)
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"),  # noqa: ASYNC220 — once, before timing "record", "--pid", str(os.getpid()),
                                "--threads", "--gil", "--nonblocking", "--rate", "200", "--format", "raw",
                                "-o", str(py_spy / f"sms-{kind}.txt")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(1.0)
    outbox.perform = timed_perform
    service = SmsService(settings, db, core)
    side = None
    try:
        threads0, db0 = thread_cpu(), tree_cpu(db_pid)
        with Meter(smsc.proc.pid) as meter:
            t0 = time.perf_counter()
            await service.start()
            if kind != "ours":
                side = asyncio.create_task(make_due())
            try:
                await asyncio.wait_for(finished.wait(), 300)
            except TimeoutError:
                raise RuntimeError(f"{kind}: {outcomes['done']} of {len(messages)} rows done after 300 s "
                                   f"(outcomes {dict(outcomes)}, SMPP {service.status()})") from None
        seconds = marks["done"] - t0
        by_thread = cpu_by_thread(threads0, thread_cpu())
        db_cpu = tree_cpu(db_pid) - db0
        if side is not None:
            await side
    finally:
        outbox.perform = original
        await service.stop()
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
    got = smsc.report()
    with db.session() as s:
        stored = {
            "rows_done": s.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "done")),
            "rows_not_done": s.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.status != "done")),
            "messages_submitted": s.scalar(select(func.count()).select_from(SmsMessage)
                                           .where(SmsMessage.status == "submitted")),
            "parts_stored": s.scalar(select(func.count()).select_from(SmsPart)),
            "attempts": s.scalar(select(func.sum(OutboxItem.attempts))),
        }
    db.dispose()
    check = check_at_smsc(messages, got)
    extra = {"cpu_by_thread": by_thread, "db": stored, "perform_outcomes": dict(outcomes), "binds": service.connector.binds,
             "rows_made_due": marks.get("made_due", 0), "drop_before_resp": drop_before_resp if kind != "ours" else None}
    others = meter.others
    if db_pid is not None:   # the PostgreSQL server is part of the benchmark, not another job
        extra["db_server_cpu_us_per_segment"] = round(db_cpu * 1e6 / parts, 1)
        others = max(0.0, others - db_cpu / (meter.wall * (os.cpu_count() or 1)))
    return Run(kind, len(messages), parts, seconds, meter.own, meter.child, others, check, smsc_span(got),
               row_ms, extra)


# ---------------------------------------------------------------------------- report


LABEL = {"ours": "ours: outbox → SmsService → FakeSMSC", "raw": "raw smpp34 client, 10 in flight",
         "drop": "ours, SMSC drops ×2 after the resp", "drop_before_resp": "ours, SMSC drops ×2 before the resp"}


def row_line(kind: str, runs: list[Run]) -> str:
    def med(fn) -> float:
        return statistics.median(fn(r) for r in runs)
    p50 = med(lambda r: percentile(r.row_ms, 50)) if runs[0].row_ms else float("nan")
    p99 = med(lambda r: percentile(r.row_ms, 99)) if runs[0].row_ms else float("nan")
    c = runs[-1].check
    return (f"{LABEL[kind]:<40}{med(lambda r: r.rate):>10,.0f}{med(lambda r: r.rows / r.seconds):>8,.0f}"
            f"{med(lambda r: r.seconds):>8.2f}{med(lambda r: r.parts / r.smsc_span if r.smsc_span else 0):>10,.0f}"
            f"{p50:>8.1f}{p99:>8.1f}{med(lambda r: r.own_cpu * 1e6 / r.parts):>9.0f}"
            f"{med(lambda r: r.smsc_cpu * 1e6 / r.parts):>9.0f}{med(lambda r: r.own_cpu / r.seconds):>6.0%}"
            f"{sum(x.check['parts_lost'] for x in runs):>6}{sum(x.check['parts_duplicated'] for x in runs):>6}"
            f"{sum(x.check['messages_lost'] for x in runs):>6}{sum(x.check['messages_duplicated'] for x in runs):>6}"
            f"{max(r.other_jobs for r in runs):>7.0%}  ({len(runs)} run{'s' if len(runs) > 1 else ''}, "
            f"last: {c['parts_accepted']} parts accepted)")


def print_table(runs: dict[str, list[Run]], n: int, parts: int) -> None:
    head = (f"{'path':<40}{'seg/s':>10}{'rows/s':>8}{'secs':>8}{'@SMSC/s':>10}{'row p50':>8}{'row p99':>8}"
            f"{'µs/seg':>9}{'SMSC µs':>9}{'busy':>6}{'lostP':>6}{'dupP':>6}{'lostM':>6}{'dupM':>6}{'others':>7}")
    print(f"\n{n:,} messages = {parts:,} segments a run; medians over the runs of each path")
    print(head + "\n" + "-" * len(head))
    for kind in ("ours", "raw", "drop", "drop_before_resp"):
        if runs.get(kind):
            print(row_line(kind, runs[kind]))
    print("(seg/s: segments / seconds from start (bind included) to the last row done (ours) or last submit_sm_resp "
          "(raw); @SMSC/s: segments / time from the first to the last submit the SMSC accepted; row p50/p99: ms of "
          "outbox.perform per row, claim → done; µs/seg: CPU of this process (product or raw client) per segment; "
          "SMSC µs: the fake's CPU per segment; busy: this process's CPU / wall; lostP/dupP: parts lost / duplicated "
          "at the SMSC, lostM/dupM: whole texts; others: share of the machine used by other processes)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sms", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=2000, help="outbox rows (messages) per run (default 2000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of ours + raw, alternating (default 3)")
    p.add_argument("--quick", action="store_true", help="1000 messages, 1 round")
    p.add_argument("--no-drops", action="store_true", help="skip the two runs with the SMSC dropping the link")
    p.add_argument("--postgres", action="store_true",
                   help="PostgreSQL (tests.support.postgres.PostgresServer(durable=True)) instead of SQLite")
    p.add_argument("--py-spy", type=Path, metavar="DIR",
                   help="record this process with `py-spy record --gil --threads` during the ours runs (collapsed "
                        "stacks in DIR/sms-ours.txt, summarized at the end; needs `pip install py-spy` and ptrace "
                        "rights; the figures of profiled runs are not comparable)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the SMSC and this process to separate CPUs")
    p.add_argument("--seed", type=int, default=12319)
    p.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = p.parse_args(argv)
    if args.quick:
        args.messages, args.rounds = 1000, 1
    logging.basicConfig(level=logging.ERROR)
    for name in ("sms", "case_bridge", "sms.smpp", "case_bridge.outbox"):
        logging.getLogger(name).setLevel(logging.ERROR)   # "outbox sms #n attempt 1 failed" after each drop

    smsc_cpu, own_cpu = cpu_split(args.no_pin)
    smsc = SmscProcess(smsc_cpu)   # forked before any event loop or thread starts here
    pg = None
    workdir = Path(tempfile.mkdtemp(prefix="bench-sms-"))
    try:
        if args.postgres:   # started from a thread pinned to the SMSC's CPU: the server inherits it
            from tests.support.postgres import PostgresServer
            pin(smsc_cpu)
            pg = PostgresServer(durable=True).start()
        pin(own_cpu)
        template = prepare_template(workdir, pg)
        from case_bridge import CaseCore
        from hotline.settings import load_settings
        core = CaseCore(load_settings(data_dir=workdir / "var", database_url=fresh_database(template, workdir, "core", pg)))
        messages = build_messages(args.messages, args.seed, "m")
        parts = sum(len(m.parts) for m in messages)
        mix = Counter(len(m.parts) for m in messages)
        print(f"{args.messages:,} messages: " + ", ".join(f"{mix[k]:,} of {k} part{'s' if k > 1 else ''}" for k in sorted(mix))
              + f" = {parts:,} segments; database {'PostgreSQL (durable)' if pg else 'SQLite'}; FakeSMSC pid "
              f"{smsc.proc.pid}" + (f", pinned to CPU {smsc_cpu}; product / raw client pinned to CPU {own_cpu}"
                                    if smsc_cpu is not None else ", not pinned")
              , flush=True)
        runs: dict[str, list[Run]] = {"ours": [], "raw": [], "drop": [], "drop_before_resp": []}
        counter = [0]

        def show(r: Run) -> None:
            c = r.check
            print(f"  {LABEL[r.kind]:<40} {r.rate:>8,.0f} seg/s  {r.rows / r.seconds:>6,.0f} rows/s  "
                  f"{r.seconds:6.2f} s  busy {r.own_cpu / r.seconds:4.0%}  parts once {c['parts_once']}/"
                  f"{c['parts_expected']} dup {c['parts_duplicated']} lost {c['parts_lost']}  texts once "
                  f"{c['messages_once']}/{c['messages_expected']} dup {c['messages_duplicated']}"
                  + (f"  drops {c['smsc_drops']} binds {r.extra.get('binds')}" if r.kind.startswith("drop") else "")
                  + f"  other jobs {r.other_jobs:.0%}", flush=True)

        async def ours(kind: str, drop_before_resp: bool = False) -> Run:
            counter[0] += 1
            url = fresh_database(template, workdir, f"run{counter[0]}", pg)
            r = await run_ours(smsc, messages, url, workdir / "var", core, kind, drop_before_resp,
                               args.py_spy if kind == "ours" else None, postmaster_pid(pg))
            runs[kind].append(r)
            show(r)
            return r

        async def all_runs() -> None:
            # warm-up: imports, code paths, the template cache; not measured
            await run_raw(smsc, messages[:200])
            counter[0] += 1
            await run_ours(smsc, messages[:200], fresh_database(template, workdir, "warmup", pg), workdir / "var", core)
            for r in range(args.rounds):
                for kind in (("ours", "raw") if r % 2 == 0 else ("raw", "ours")):
                    if kind == "raw":
                        runs["raw"].append(await run_raw(smsc, messages))
                        show(runs["raw"][-1])
                    else:
                        await ours("ours")
            if not args.no_drops:
                await ours("drop", False)
                await ours("drop_before_resp", True)

        asyncio.run(all_runs())
    finally:
        smsc.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print_table(runs, args.messages, parts)
    ours_rate = statistics.median(r.rate for r in runs["ours"])
    raw_rate = statistics.median(r.rate for r in runs["raw"])
    ratios = [o.rate / w.rate for o, w in zip(runs["ours"], runs["raw"])]
    mid = sorted(runs["ours"], key=lambda r: r.rate)[len(runs["ours"]) // 2]
    print(f"\nwhere ours' CPU goes (the median ours run, {mid.rate:,.0f} seg/s; CPU per segment, from /proc per thread):")
    for group, t in mid.extra["cpu_by_thread"].items():
        print(f"  {group:<32} user {t['user'] * 1e6 / mid.parts:>6.0f} µs  system {t['system'] * 1e6 / mid.parts:>6.0f} µs")
    if "db_server_cpu_us_per_segment" in mid.extra:
        print(f"  {'PostgreSQL server (other CPU)':<32} {mid.extra['db_server_cpu_us_per_segment']:>11.0f} µs")
    ours_cpu = statistics.median(r.own_cpu / r.parts for r in runs["ours"])
    raw_cpu = statistics.median(r.own_cpu / r.parts for r in runs["raw"])
    print(f"\nratio ours / raw smpp34: segments/s {statistics.median(ratios):.3f} (median of the per-round pairs; "
          f"ours {ours_rate:,.0f}, raw {raw_rate:,.0f}); CPU per segment raw / ours {raw_cpu / ours_cpu:.3f} "
          f"({ours_cpu * 1e6:.0f} µs vs {raw_cpu * 1e6:.0f} µs)")
    verdicts = []

    def verdict(ok: bool, text: str) -> None:
        verdicts.append((ok, text))
        print(f"{'PASS' if ok else 'FAIL'}  {text}")

    print()
    verdict(ours_rate >= TARGET_SEGMENTS, f"ours ≥ {TARGET_SEGMENTS:,.0f} segments/s without a rate cap: "
            f"{ours_rate:,.0f} (median of {len(runs['ours'])})")
    for kind in ("ours", "raw", "drop"):
        if not runs[kind]:
            continue
        cs = [r.check for r in runs[kind]]
        total = {k: sum(c[k] for c in cs) for k in ("parts_expected", "parts_once", "parts_lost", "parts_duplicated",
                                                     "messages_expected", "messages_once", "messages_lost",
                                                     "messages_duplicated")}
        verdict(all(exact(c) for c in cs),
                f"{LABEL[kind]}: every part and every message exactly once at the SMSC in {sum(map(exact, cs))}/{len(cs)} "
                f"run(s) — {total['parts_once']:,}/{total['parts_expected']:,} parts once ({total['parts_lost']} lost, "
                f"{total['parts_duplicated']} duplicated), {total['messages_once']:,}/{total['messages_expected']:,} "
                f"texts once ({total['messages_lost']} lost, {total['messages_duplicated']} duplicated)"
                + (f"; {sum(c['smsc_drops'] for c in cs)} drops, {sum(r.extra['binds'] for r in runs[kind])} binds"
                   if kind == "drop" else ""))
    for kind in ("ours", "drop", "drop_before_resp"):
        if not runs[kind]:
            continue
        dbs = [(r, r.extra["db"]) for r in runs[kind]]
        ok = [db["rows_done"] == r.rows and db["parts_stored"] == r.parts and db["messages_submitted"] == r.rows
              for r, db in dbs]
        verdict(all(ok), f"{LABEL[kind]}: database in {sum(ok)}/{len(ok)} run(s) — "
                f"{sum(db['rows_done'] for _, db in dbs):,} rows done, {sum(db['parts_stored'] for _, db in dbs):,} parts "
                f"stored, {sum(db['messages_submitted'] for _, db in dbs):,} messages submitted, "
                f"{sum(db['attempts'] for _, db in dbs):,} attempts (of {sum(r.rows for r, _ in dbs):,} rows, "
                f"{sum(r.parts for r, _ in dbs):,} parts)")
    for r in runs["drop"]:
        print(f"      drop run: {r.rate:,.0f} segments/s over {r.seconds:.2f} s (includes 2 reconnects with the "
              f"connector's 0.4–0.6 s first back-off); {r.extra['rows_made_due']} pending row(s) made due by the side loop")
    for r in runs["drop_before_resp"]:
        c = r.check
        print(f"INFO  {LABEL[r.kind]}: {c['parts_lost']} parts lost, {c['parts_duplicated']} part(s) duplicated, "
              f"{c['messages_duplicated']} whole text(s) duplicated, {c['smsc_drops']} drops — the SMSC accepted the "
              f"part it never answered; SMPP cannot tell us, so the retry sends it again (expected: 1 part per drop; a "
              f"repeated part of a long text is not a second whole text at the SMSC's reassembly, a repeated 1-part "
              f"text is)")
        for d in c["duplicated_parts"]:
            print(f"      duplicated: to {d['to']} ref {d['ref']} part {d['seq']}/{d['total']} × {d['times']}")
    if args.py_spy:
        for f in sorted(args.py_spy.glob("sms-*.txt")):
            print("\n" + summarize_py_spy(f))
    noisy = [r for rs in runs.values() for r in rs if r.other_jobs > 0.05]
    if noisy:
        print(f"\nWARNING: other processes used more than 5 % of the machine in {len(noisy)} run(s) (up to "
              f"{max(r.other_jobs for r in noisy):.0%}); those figures are depressed — rerun on a quiet machine.")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "sms", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "-m", "bench.sms", *(argv if argv is not None else sys.argv[1:])]),
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "pinned": smsc_cpu is not None,
                        "database": "postgresql" if args.postgres else "sqlite", "window": WINDOW, "rate_cap": 0,
                        "profiled": bool(args.py_spy)},
        "messages": args.messages, "segments": parts, "mix": {str(k): v for k, v in sorted(mix.items())},
        "targets": {"segments_per_s": TARGET_SEGMENTS, "lost": 0, "duplicated": 0},
        "median_segments_per_s": {k: round(statistics.median(r.rate for r in rs), 1) for k, rs in runs.items() if rs},
        "ratio_ours_to_raw": round(statistics.median(ratios), 4),
        "verdicts": [{"pass": ok, "what": text} for ok, text in verdicts],
        "runs": {k: [r.summary() for r in rs] for k, rs in runs.items()},
    }, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(f"\nresults written to {args.json}")
    return 0 if all(ok for ok, _ in verdicts) else 2




if __name__ == "__main__":
    sys.exit(main())
