"""AMI throughput: events per second from a fake Asterisk through our AMI client to the bus,
against a bare parse of the same bytes measured in the same run.

The stream is the recorded Asterisk 22.10.1 events of `ami_queue_answered` + `ami_queue_abandoned`
(tests/fixtures/asterisk22, through `tests.support.transcripts.events_from`: events only, without
the recorded client's own replies, list items and login events), repeated until it holds
`--events` events, with every Uniqueid/Linkedid, channel sequence number and Timestamp moved on
per repetition, so each repetition is a new pair of calls (a queue answered, a queue abandoned)
and the state stays bounded as it would in production.

Measured, each as events/s over the same bytes:

- **ours, TCP → bus** (the figure): `tests.support.fake_ami.FakeAMI` in its own process pushes the
  stream (one `push`) to our `AMIClient`, logged in and resynced with `connect_once()`, in this
  process; timed from the first byte of the stream received to the last event counted by
  `client.state.events_seen` and the last notice delivered to bus subscribers on "call.*" and
  "queue.*" (their count is checked against a dry run of `CallCentreState` over the same events);
- **bare parse** (the baseline): split on b"\\r\\n\\r\\n", decode, dict of headers — in memory,
  over the bytes cut in the 256 KiB pieces asyncio's socket reads deliver;
- for the breakdown: the bare parse behind a TCP socket (same fake, a bare asyncio protocol), the
  panoramisk 1.4 `AMIProtocol.data_received` parse, our `AMIProtocol` framing + `parse_message`
  alone, and our protocol + client + state + bus without the socket.

    .venv/bin/python -m bench.ami [--events 200000] [--rounds 3] [--quick] [--profile]

The client and the fake run on the default asyncio loop, pinned to one CPU each.
"""
from __future__ import annotations

import argparse
import asyncio
import fnmatch
import gc
import json
import logging
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from panoramisk.message import Message

from bench._meter import Child, Meter, cpu_split, pin, serve_until_stopped
from hotline.bus import InProcessBus
from ivr.ami import AMIClient, AMIProtocol, parse_message
from ivr.ami_state import CallCentreState
from tests.support import transcripts

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "ami.json"
HOST = "127.0.0.1"
USERNAME, SECRET = "hotline", "hotline-secret"
TRANSCRIPTS = ("ami_queue_answered", "ami_queue_abandoned")
PATTERNS = ("call.*", "queue.*")
READ_SIZE = 256 * 1024          # asyncio's selector transport reads up to this much per recv()
TARGET = 50_000.0               # events/s through our client
SHIFT_SECONDS = 40              # each repetition happens 40 s after the previous one

# ---------------------------------------------------------------------------- the stream

UNIQUEID_HEADER = re.compile(rb"(?m)^\w*(?:Uniqueid|Linkedid): (\d{9,11}\.\d+)\r$")
CHANNEL_SEQ = re.compile(rb"(?<=[A-Za-z0-9_/]-)[0-9a-f]{8}(?=[;,\r\s])")
TIMESTAMP = re.compile(rb"(?m)(?<=^Timestamp: )\d+(?=\.\d+\r$)")


def recorded_events(name: str) -> list[bytes]:
    """The events Asterisk sent on the recorded connection: no Response, no login events, none that
    answer the recorded client's own actions (ActionID)."""
    own = transcripts.action_ids(name)
    kept = []
    for message in transcripts.events_from(name):
        if not message.startswith(b"Event:"):
            continue
        headers = transcripts.parse_message(message)
        if headers.get("Event") in ("FullyBooted", "SuccessfulAuth"):
            continue
        if isinstance(headers.get("ActionID"), str) and headers["ActionID"] in own:
            continue
        kept.append(message)
    return kept


def template(blobs: list[bytes]) -> tuple[list[bytes], list[Callable[[int], bytes]]]:
    """The transcripts' bytes as literal pieces and, between them, functions of the repetition number
    giving the piece that changes: a uniqueid, a channel sequence number, a timestamp's seconds.
    Every distinct uniqueid and channel number of every transcript gets its own number per repetition."""
    ids: dict[tuple[int, bytes], int] = {}
    chans: dict[tuple[int, bytes], int] = {}
    found = []
    for b, blob in enumerate(blobs):
        for u in UNIQUEID_HEADER.findall(blob):
            ids.setdefault((b, u), len(ids))
        for c in CHANNEL_SEQ.findall(blob):
            chans.setdefault((b, c), len(chans))
        found.append(sorted({u for (bb, u) in ids if bb == b}))
    per_rep_ids, per_rep_chans = max(1, len(ids)), max(1, len(chans))

    def uid(b: int, u: bytes) -> Callable[[int], bytes]:
        epoch, n = int(u.split(b".")[0]), ids[(b, u)]
        return lambda r: b"%d.%d" % (epoch + r * SHIFT_SECONDS, r * per_rep_ids + n)

    def chan(b: int, c: bytes) -> Callable[[int], bytes]:
        n = chans[(b, c)]
        return lambda r: b"%08x" % (r * per_rep_chans + n)

    def stamp(t: bytes) -> Callable[[int], bytes]:
        seconds = int(t)
        return lambda r: b"%d" % (seconds + r * SHIFT_SECONDS)

    literals: list[bytes] = []
    holes: list[Callable[[int], bytes]] = []
    pending = b""
    for b, blob in enumerate(blobs):
        spans: list[tuple[int, int, Callable[[int], bytes]]] = []
        if found[b]:   # a uniqueid anywhere (VarSet values too), never inside a longer number (Timestamp)
            anyid = re.compile(rb"(?<![\d.])(?:" + b"|".join(re.escape(u) for u in found[b]) + rb")(?![\d])")
            spans += [(m.start(), m.end(), uid(b, m.group())) for m in anyid.finditer(blob)]
        spans += [(m.start(), m.end(), chan(b, m.group())) for m in CHANNEL_SEQ.finditer(blob)]
        spans += [(m.start(), m.end(), stamp(m.group())) for m in TIMESTAMP.finditer(blob)]
        spans.sort(key=lambda x: x[0])
        pos = 0
        for start, end, fn in spans:
            if start < pos:
                continue   # overlapping matches cannot happen with these patterns; be safe
            literals.append(pending + blob[pos:start])
            pending = b""
            holes.append(fn)
            pos = end
        pending += blob[pos:]
    literals.append(pending)
    return literals, holes


def build_stream(target_events: int) -> tuple[bytes, int, int]:
    """(stream bytes, events in it, repetitions)."""
    per_transcript = [recorded_events(name) for name in TRANSCRIPTS]
    count = sum(len(m) for m in per_transcript)
    literals, holes = template([b"".join(m) for m in per_transcript])
    reps = max(1, -(-target_events // count))
    parts: list[bytes] = []
    for r in range(reps):
        for lit, fn in zip(literals, holes):
            parts.append(lit)
            parts.append(fn(r))
        parts.append(literals[-1])
    return b"".join(parts), reps * count, reps


def chunks_of(stream: bytes, size: int = READ_SIZE) -> list[bytes]:
    return [stream[i:i + size] for i in range(0, len(stream), size)]


def dry_run(stream: bytes) -> dict[str, Any]:
    """What the client must end with: events, and notices per bus pattern (a fresh state, no I/O)."""
    state = CallCentreState()
    events = notices = 0
    topics: dict[str, int] = {}
    messages, rest = transcripts.split_messages(stream)
    assert not rest
    for raw in messages:
        message = parse_message(raw[:-4])
        if message is None or message.get("Event") is None:
            continue
        events += 1
        for topic, _ in state.apply(message):
            topics[topic] = topics.get(topic, 0) + 1
            if any(fnmatch.fnmatchcase(topic, p) for p in PATTERNS):
                notices += 1
    return {"events": events, "notices": notices, "topics": topics, "live_calls_after": len(state.calls),
            "unknown_events": state.unknown_events}


# ---------------------------------------------------------------------------- the fake's process


def _fake_main(conn: Any, cpu: int | None, stream: bytes) -> None:
    pin(cpu)
    asyncio.run(_fake_serve(conn, stream))


async def _fake_serve(conn: Any, stream: bytes) -> None:
    from tests.support.fake_ami import FakeAMI
    fake = await FakeAMI.start(secret=SECRET, username=USERNAME)
    conn.send(fake.port)
    busy = set()

    async def push() -> None:
        clients = await fake.push(stream)
        if isinstance(getattr(fake, "sent", None), list):
            fake.sent.clear()   # it keeps a reference per write; nothing to keep here
        conn.send(clients)

    def command(what: str) -> None:   # "push": the whole stream to every logged-in client
        task = asyncio.ensure_future(push())
        busy.add(task)
        task.add_done_callback(busy.discard)

    await serve_until_stopped(conn, command)
    await fake.stop()


class FakeProcess(Child):
    def __init__(self, cpu: int | None, stream: bytes) -> None:
        super().__init__(_fake_main, (cpu, stream), "fake-ami")   # forked: the stream is inherited, not pickled

    def push(self) -> None:
        self.conn.send("push")

    def pushed(self, timeout: float = 60) -> int:
        if not self.conn.poll(timeout):
            raise RuntimeError("FakeAMI did not finish its push")
        return self.conn.recv()


# ---------------------------------------------------------------------------- the measurements


@dataclass
class Sample:
    name: str
    events: int
    seconds: float
    cpu: float = float("nan")     # this process's CPU seconds over the measurement
    other_jobs: float = 0.0
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def bare_parse(chunks: list[bytes]) -> int:
    """The floor: cut at the blank line, decode, a dict of the headers. Nothing else."""
    buf = b""
    n = 0
    for chunk in chunks:
        buf += chunk
        parts = buf.split(b"\r\n\r\n")
        buf = parts.pop()
        for raw in parts:
            headers = {k: v for k, _, v in (line.partition(": ") for line in raw.decode("utf-8").split("\r\n"))}
            n += "Event" in headers
    return n


def panoramisk_parse(chunks: list[bytes]) -> int:
    """panoramisk 1.4's AMIProtocol.data_received (decode per read, split, Message.from_line,
    handle_message → factory.dispatch), with a factory that only counts."""
    from panoramisk.ami_protocol import AMIProtocol as PanoramiskProtocol

    class Factory:
        n = 0

        def dispatch(self, message: Any) -> None:
            Factory.n += 1

    proto = PanoramiskProtocol()
    proto.connection_made(_NullTransport())
    proto.factory = Factory()
    proto.encoding = "utf8"   # what panoramisk's Manager sets
    proto.version = "11.0.0"
    for chunk in chunks:
        proto.data_received(chunk)
    return Factory.n


class _NullTransport:
    """Takes what the in-memory client writes (its actions) and counts it; nothing is sent."""

    def __init__(self) -> None:
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def ours_parse_only(chunks: list[bytes]) -> int:
    """Our AMIProtocol framing + parse_message, handing each read's messages to a client that only counts."""
    class Counter:
        n = 0

        def received(self, messages: list[Message]) -> None:
            Counter.n += len(messages)

    proto = AMIProtocol(Counter())   # type: ignore[arg-type]
    proto.connection_made(_NullTransport())
    proto.banner_seen = True
    for chunk in chunks:
        proto.data_received(chunk)
    return Counter.n


async def ours_in_memory(chunks: list[bytes], expect: dict[str, Any]) -> tuple[int, int]:
    """Our protocol + client (received, state, dispatch, bus) fed the bytes without a socket; one read
    per loop iteration, as the transport would deliver them."""
    loop = asyncio.get_running_loop()
    bus = InProcessBus()
    done = loop.create_future()
    got = [0]

    async def on_notice(event: Any) -> None:
        got[0] += 1
        if got[0] == expect["notices"]:
            done.set_result(None)

    for pattern in PATTERNS:
        bus.subscribe(pattern, on_notice)
    client = AMIClient(HOST, 0, USERNAME, SECRET, bus=bus)
    proto = AMIProtocol(client)
    proto.connection_made(_NullTransport())
    proto.banner_seen = True
    client.protocol = proto
    for chunk in chunks:
        proto.data_received(chunk)
        await asyncio.sleep(0)
    try:
        await asyncio.wait_for(done, 60)
    except TimeoutError:
        raise RuntimeError(f"in-memory run: {got[0]} notices, expected {expect['notices']}") from None
    return client.state.events_seen, got[0]


async def ours_tcp(fake: FakeProcess, expect: dict[str, Any], timeout: float = 120.0) -> Sample:
    """The figure: FakeAMI (other process) → TCP → AMIClient → CallCentreState → InProcessBus."""
    loop = asyncio.get_running_loop()
    bus = InProcessBus()
    done = loop.create_future()
    marks: dict[str, float] = {}
    notices = [0]
    client = AMIClient(HOST, fake.port, USERNAME, SECRET, bus=bus)
    await client.connect_once()
    base_events = client.state.events_seen
    proto = client.protocol
    assert proto is not None
    original = proto.data_received

    def finished() -> None:
        if "events" in marks and "notices" in marks and not done.done():
            done.set_result(None)

    def timed_data_received(data: bytes) -> None:
        if "first" not in marks:
            marks["first"] = time.perf_counter()
        original(data)
        if "events" not in marks and client.state.events_seen - base_events >= expect["events"]:
            marks["events"] = time.perf_counter()
            finished()

    async def on_notice(event: Any) -> None:
        notices[0] += 1
        if notices[0] == expect["notices"]:
            marks["notices"] = time.perf_counter()
            finished()

    for pattern in PATTERNS:
        bus.subscribe(pattern, on_notice)
    proto.data_received = timed_data_received   # the transport calls protocol.data_received
    gc.collect()
    with Meter(fake.proc.pid) as m:
        fake.push()
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError:
            raise RuntimeError(f"TCP run: {client.state.events_seen - base_events} events and {notices[0]} notices "
                               f"after {timeout:g} s, expected {expect['events']} and {expect['notices']}") from None
    seconds = max(marks["events"], marks["notices"]) - marks["first"]
    pushed = await loop.run_in_executor(None, fake.pushed)
    seen = client.state.events_seen - base_events
    await client.stop()
    await asyncio.sleep(0.05)   # let a late notice show up, if any
    if seen != expect["events"] or notices[0] != expect["notices"] or pushed != 1:
        raise RuntimeError(f"TCP run: {seen} events, {notices[0]} notices, pushed to {pushed} clients; expected "
                           f"{expect['events']}, {expect['notices']}, 1")
    return Sample(TCP, seen, seconds, m.own, m.others,
                  note=f"client CPU {m.own:.2f} s, fake CPU {m.child:.2f} s; events done at "
                       f"{marks['events'] - marks['first']:.3f} s, last notice at {marks['notices'] - marks['first']:.3f} s")


async def bare_tcp(fake: FakeProcess, expect: dict[str, Any], timeout: float = 120.0) -> Sample:
    """The bare parse behind the same socket: log in with raw bytes, then count events."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    state = {"go": False, "n": 0, "buf": b""}
    marks: dict[str, float] = {}

    class Bare(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            if not state["go"]:
                return   # banner, login reply, FullyBooted, SuccessfulAuth
            if "first" not in marks:
                marks["first"] = time.perf_counter()
            buf = state["buf"] + data
            parts = buf.split(b"\r\n\r\n")
            state["buf"] = parts.pop()
            n = 0
            for raw in parts:
                headers = {k: v for k, _, v in (line.partition(": ") for line in raw.decode("utf-8").split("\r\n"))}
                n += "Event" in headers
            state["n"] += n
            if state["n"] >= expect["events"] and not done.done():
                marks["last"] = time.perf_counter()
                done.set_result(None)

    transport, _ = await loop.create_connection(Bare, HOST, fake.port)
    transport.write(f"Action: Login\r\nUsername: {USERNAME}\r\nSecret: {SECRET}\r\nEvents: on\r\n\r\n".encode())
    await asyncio.sleep(0.2)   # login reply and its events arrive and are ignored
    state["go"] = True
    gc.collect()
    with Meter(fake.proc.pid) as m:
        fake.push()
        await asyncio.wait_for(done, timeout)
    await loop.run_in_executor(None, fake.pushed)
    transport.write(b"Action: Logoff\r\n\r\n")
    await asyncio.sleep(0.05)
    transport.close()
    seconds = marks["last"] - marks["first"]
    return Sample(BARE_TCP, state["n"], seconds, m.own, m.others)


def timed(name: str, fn: Callable[[], int]) -> Sample:
    gc.collect()
    with Meter() as m:
        n = fn()
    return Sample(name, n, m.wall, m.own, m.others)


async def timed_async(name: str, coro_fn: Callable[[], Any]) -> Sample:
    gc.collect()
    with Meter() as m:
        events, _ = await coro_fn()
    return Sample(name, events, m.wall, m.own, m.others)


# ---------------------------------------------------------------------------- profile


def profile_in_memory(chunks: list[bytes], expect: dict[str, Any], top: int) -> str:
    import cProfile
    import io
    import pstats
    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, ours_in_memory(chunks, expect))
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# ---------------------------------------------------------------------------- main


TCP = "ours: FakeAMI → TCP → AMIClient → state → bus"
BARE_TCP = "bare parse behind TCP (same fake)"
IN_MEMORY = "ours: protocol → client → state → bus, no socket"
PARSE_ONLY = "ours: AMIProtocol framing + parse_message, in memory"
PANORAMISK = "panoramisk 1.4 AMIProtocol.data_received, in memory"
BARE = "bare parse (split + decode + dict), in memory"


async def run_rounds(fake: FakeProcess, chunks: list[bytes], expect: dict[str, Any],
                     rounds: int) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {}

    def add(s: Sample) -> None:
        samples.setdefault(s.name, []).append(s)

    # warm-up: imports, code paths (a tenth of the stream through each path, not timed)
    head = chunks[:max(1, len(chunks) // 10)]
    bare_parse(head)
    panoramisk_parse(head)
    ours_parse_only(head)
    for r in range(rounds):
        # alternate the order of the socket runs and the in-memory runs between rounds
        steps = ["tcp", "bare_tcp", "memory"] if r % 2 == 0 else ["memory", "bare_tcp", "tcp"]
        for step in steps:
            if step == "tcp":
                add(await ours_tcp(fake, expect))
            elif step == "bare_tcp":
                add(await bare_tcp(fake, expect))
            else:
                add(timed(BARE, lambda: bare_parse(chunks)))
                add(timed(PANORAMISK, lambda: panoramisk_parse(chunks)))
                add(timed(PARSE_ONLY, lambda: ours_parse_only(chunks)))
                add(await timed_async(IN_MEMORY, lambda: ours_in_memory(chunks, expect)))
        line = (f"  round {r + 1}/{rounds}: ours TCP→bus {samples[TCP][-1].rate:>8,.0f} ev/s   "
                f"bare {samples[BARE][-1].rate:>8,.0f}   panoramisk {samples[PANORAMISK][-1].rate:>7,.0f}   "
                f"ours in memory {samples[IN_MEMORY][-1].rate:>7,.0f}")
        latest = [ss[-1] for ss in samples.values()]
        print(line + f"   other jobs ≤ {max(s.other_jobs for s in latest):.0%}", flush=True)
    return samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ami", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000, help="events in the stream (default 200,000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of every measurement (default 3)")
    p.add_argument("--quick", action="store_true", help="50,000 events, 2 rounds")
    p.add_argument("--profile", action="store_true",
                   help="also run the in-memory client path once under cProfile and print the top functions")
    p.add_argument("--no-pin", action="store_true", help="do not pin the fake and the client to separate CPUs")
    p.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.rounds = 50_000, 2
    logging.getLogger("ivr.ami").setLevel(logging.ERROR)   # "AMI link lost" after every round's Logoff

    t = time.perf_counter()
    stream, n_events, reps = build_stream(args.events)
    chunks = chunks_of(stream)
    expect = dry_run(stream)
    if expect["events"] != n_events:
        raise RuntimeError(f"stream holds {expect['events']} events, built {n_events}")
    if expect["live_calls_after"]:
        raise RuntimeError(f"{expect['live_calls_after']} calls still live after the stream: uniqueids collide")
    print(f"stream: {n_events:,} events ({reps} × {n_events // reps} recorded events of {' + '.join(TRANSCRIPTS)}), "
          f"{len(stream) / 1e6:.1f} MB, {expect['notices']:,} bus notices on {', '.join(PATTERNS)} "
          f"(built and dry-run in {time.perf_counter() - t:.1f} s)", flush=True)

    fake_cpu, client_cpu = cpu_split(args.no_pin)
    fake = FakeProcess(fake_cpu, stream)
    pin(client_cpu)
    try:
        print(f"FakeAMI pid {fake.proc.pid} on port {fake.port}"
              + (f", pinned to CPU {fake_cpu}; client pinned to CPU {client_cpu}" if fake_cpu is not None else ""),
              flush=True)
        samples = asyncio.run(run_rounds(fake, chunks, expect, args.rounds))
    finally:
        fake.stop()

    order = [TCP, BARE_TCP, IN_MEMORY, PARSE_ONLY, PANORAMISK, BARE]
    med = {name: statistics.median(s.rate for s in samples[name]) for name in order}
    per_cpu = {name: statistics.median(s.events / s.cpu for s in samples[name] if s.cpu > 0) for name in order}
    bare = med[BARE]
    head = f"{'path':<62}{'events/s':>10}{'µs/event':>10}{'÷ bare':>8}{'ev/CPU-s':>10}{'other jobs':>12}"
    print(f"\nmedian of {args.rounds} rounds, {n_events:,} events each ({os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, default asyncio loop)")
    print(head + "\n" + "-" * len(head))
    for name in order:
        worst = max(s.other_jobs for s in samples[name])
        print(f"{name:<62}{med[name]:>10,.0f}{1e6 / med[name]:>10.2f}{med[name] / bare:>8.3f}{per_cpu[name]:>10,.0f}"
              f"{worst:>11.0%}")
    print("(events/s: wall time; ev/CPU-s: events per CPU second of this process — the client; it holds up better "
          "when other jobs share the machine. other jobs: the largest share of the machine used by processes "
          "outside the benchmark while that row was measured; if not ~0 %, the events/s of that row are depressed)")
    ours = med[TCP]
    verdict = "meets" if ours >= TARGET else "BELOW"
    print(f"\nours through TCP to the bus: {ours:,.0f} events/s — {verdict} the target of {TARGET:,.0f} events/s; "
          f"ratio to the bare parse {ours / bare:.3f} (to panoramisk's parse alone {ours / med[PANORAMISK]:.3f}); "
          f"per client CPU second {per_cpu[TCP]:,.0f} events")
    socket = 1e6 / ours - 1e6 / med[IN_MEMORY]
    print(f"where an event's {1e6 / ours:.1f} µs go (medians): our framing + parse_message {1e6 / med[PARSE_ONLY]:.1f} µs "
          f"(the bare parse: {1e6 / bare:.1f}), + client, state and bus {1e6 / med[IN_MEMORY] - 1e6 / med[PARSE_ONLY]:.1f} µs, "
          f"+ socket and fake " + (f"{socket:.1f} µs" if socket > 0 else "≈ 0 (within the noise)"))
    print(f"(a TCP round: {samples[TCP][len(samples[TCP]) // 2].note})")
    noisy = [s for ss in samples.values() for s in ss if s.other_jobs > 0.05]
    if noisy:
        print(f"\nWARNING: other processes used more than 5 % of the machine in {len(noisy)} measurement(s) (up to "
              f"{max(s.other_jobs for s in noisy):.0%}); those figures are depressed — rerun on a quiet machine.")
    if args.profile:
        print("\n--- cProfile of the in-memory client path (protocol → client → state → bus), top 30 by own time ---")
        print(profile_in_memory(chunks, expect, 30))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "ami", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "-m", "bench.ami", *(argv if argv is not None else sys.argv[1:])]),
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "pinned": fake_cpu is not None},
        "stream": {"events": n_events, "bytes": len(stream), "repetitions": reps, "notices": expect["notices"],
                   "topics": expect["topics"], "transcripts": TRANSCRIPTS},
        "target_events_per_s": TARGET,
        "events_per_s_median": {k: round(v, 1) for k, v in med.items()},
        "events_per_client_cpu_s_median": {k: round(v, 1) for k, v in per_cpu.items()},
        "ratio_ours_tcp_to_bare": round(ours / bare, 4),
        "rounds": {name: [{"events_per_s": round(s.rate, 1), "seconds": round(s.seconds, 4),
                           "cpu_s": round(s.cpu, 3), "other_jobs": round(s.other_jobs, 3), "note": s.note}
                          for s in ss] for name, ss in samples.items()},
    }, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
