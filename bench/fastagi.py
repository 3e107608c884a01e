"""FastAGI throughput: IVR sessions per second through our AGIServer, against bare panoramisk 1.4.

Both servers run the same 10-command IVR flow (`ivr_flow`: ANSWER, STREAM FILE welcome, GET DATA
menu 5000 1, STREAM FILE ×2, GET DATA progress 10000 20, SET VARIABLE ×3, STREAM FILE goodbye):

- **ours**: `ivr.agi.AGIServer`, the flow called with the `AGICall` (`answer`, `stream`, `get_data`,
  `set_variable`: quoting, reply parsing, hangup checks, and the half-close / HANGUP ending);
- **bare**: `panoramisk.fast_agi.Application` 1.4 served by `asyncio.start_server(app.handler, …)`
  (as its documentation shows), the same flow through a thin adapter that sends the very same
  command lines with `request.send_command` and reads panoramisk's parsed reply.

Each server runs in its own process (default asyncio event loop, as `hotline run` does), pinned to
one CPU; the callers are `ivr.agi_peer.AGIPeer` — the Asterisk-side peer the tests use, scripted to
press "1" at the menu and a case number at the progress prompt — in this process, pinned to the
other CPU, on uvloop when it is installed (the driver is not what is measured; a cheaper driver
keeps it from being the bottleneck). Both listen with the same backlog (`--backlog`, default 1024,
what `AGIServer.start` uses; asyncio's own default of 100 overflows when 1,000 calls connect at
once). Rounds alternate ours/bare; figures are per-round medians. The server CPU per session (from
/proc) is the figure that holds up on a busy machine and when the single peer process is the limit.

    .venv/bin/python -m bench.fastagi [--sessions 5000] [--concurrency 1000] [--low-concurrency 50]
                                      [--rounds 5] [--quick] [--backlog 1024] [--profile DIR]

Round trip = what `AGIPeer.round_trips` records: from the peer's reply written to the next command
read — the server's work per command plus the loopback both ways plus any wait in either event loop.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._meter import Child, Meter, cpu_split, pin, serve_until_stopped
from bench.case_intake import percentile
from ivr.agi import AGIServer, quote
from ivr.agi_peer import AGIPeer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "fastagi.json"
HOST = "127.0.0.1"
ROUTE = "inbound"
CASE_NUMBER = "20251121001234"
KEYS = ("1", CASE_NUMBER + "#")    # the caller: "1" at the menu, a case number then # at the progress prompt
COMMANDS_PER_SESSION = 10
TARGET_RATIO = 0.70
TARGET_P99_MS = 5.0
KINDS = ("ours", "bare")
DEFAULT_SERVER = "ivr.agi:AGIServer"
LABEL = {"ours": "ours (AGIServer)", "bare": "bare panoramisk 1.4"}


# ---------------------------------------------------------------------------- the flow, once for both


async def ivr_flow(call: Any) -> None:
    """A 12319 IVR session as the product's flows run one: 10 commands, 2 key prompts."""
    await call.answer()
    await call.stream("hotline/zh/welcome")
    choice, _ = await call.get_data("hotline/zh/menu", 5000, 1)
    await call.stream(f"hotline/zh/menu_{choice or 'none'}")
    await call.stream("hotline/zh/enter_case_number")
    digits, timed_out = await call.get_data("hotline/zh/progress", 10000, 20)
    await call.set_variable("HOTLINE_INTENT", "progress" if choice == "1" else "report")
    await call.set_variable("HOTLINE_CASE", digits)
    await call.set_variable("HOTLINE_QUEUE", "" if digits and not timed_out else "hotline-12319")
    await call.stream("hotline/zh/goodbye")


class BareCall:
    """The AGICall methods `ivr_flow` uses, on panoramisk's Request: the same command lines on the
    wire, panoramisk's own reply parsing (`request.send_command` → dict), nothing else."""

    def __init__(self, request: Any) -> None:
        self.request = request

    async def answer(self) -> None:
        await self.request.send_command("ANSWER")

    async def stream(self, path: str, escape_digits: str = "") -> dict:
        return await self.request.send_command(f"STREAM FILE {path} {quote(escape_digits)}")

    async def get_data(self, path: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        reply = await self.request.send_command(f"GET DATA {path} {int(timeout_ms)} {int(max_digits)}")
        value, data = reply.get("result", ("", ""))
        return value, data == "timeout"

    async def set_variable(self, name: str, value: str) -> None:
        await self.request.send_command(f"SET VARIABLE {name} {quote(value)}")


async def bare_route(request: Any) -> None:   # panoramisk 1.4 needs an `async def` route
    await ivr_flow(BareCall(request))


# ---------------------------------------------------------------------------- the server process


def _server_main(conn: Any, kind: str, cpu: int | None, backlog: int, profile: str | None, cls: str) -> None:
    pin(cpu)
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, _serve(kind, conn, backlog, cls))
        profiler.dump_stats(profile)
    else:
        asyncio.run(_serve(kind, conn, backlog, cls))   # the default asyncio loop, as in production


def _server_class(spec: str) -> type:
    """MODULE:CLASS, imported in the server process only (a patched copy may monkeypatch ivr.agi)."""
    if spec == DEFAULT_SERVER:
        return AGIServer
    import importlib
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


async def _serve(kind: str, conn: Any, backlog: int, cls: str = "") -> None:
    if kind == "ours":
        app: Any = _server_class(cls or DEFAULT_SERVER)()
        app.add_route(ROUTE, ivr_flow)
        server = await app.start(HOST, 0, backlog=backlog)
    else:
        from panoramisk.fast_agi import Application
        app = Application()
        app.add_route(ROUTE, bare_route)
        server = await asyncio.start_server(app.handler, HOST, 0, backlog=backlog)
    conn.send(server.sockets[0].getsockname()[1])

    def command(what: str) -> None:   # "stats": sessions served so far (AGIServer counts them)
        conn.send({"sessions": getattr(app, "sessions", None), "rejected": getattr(app, "rejected", None)})

    await serve_until_stopped(conn, command)
    server.close()


class ServerProcess(Child):
    def __init__(self, kind: str, cpu: int | None, backlog: int, profile: str | None = None,
                 cls: str = DEFAULT_SERVER) -> None:
        self.kind = kind
        super().__init__(_server_main, (kind, cpu, backlog, profile, cls), f"fastagi-{kind}", start_timeout=20)

    def stats(self) -> dict:
        self.conn.send("stats")
        return self.conn.recv()


# ---------------------------------------------------------------------------- driving


@dataclass
class Round:
    kind: str
    concurrency: int
    sessions: int
    seconds: float
    round_trips_ms: list[float] = field(repr=False)
    session_ms: list[float] = field(repr=False)
    server_cpu: float
    peer_cpu: float
    other_jobs: float
    irq: float
    failures: int
    first_failure: str = ""
    server_sessions: int | None = None

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "concurrency": self.concurrency, "sessions": self.sessions,
                "seconds": round(self.seconds, 4), "sessions_per_s": round(self.rate, 1),
                "rt_p50_ms": round(percentile(self.round_trips_ms, 50), 3),
                "rt_p99_ms": round(percentile(self.round_trips_ms, 99), 3),
                "rt_max_ms": round(max(self.round_trips_ms, default=float("nan")), 3),
                "session_p50_ms": round(percentile(self.session_ms, 50), 2),
                "session_p99_ms": round(percentile(self.session_ms, 99), 2),
                "server_cpu_us_per_session": round(self.server_cpu * 1e6 / self.sessions, 1),
                "peer_cpu_us_per_session": round(self.peer_cpu * 1e6 / self.sessions, 1),
                "server_busy": round(self.server_cpu / self.seconds, 3),
                "other_jobs": round(self.other_jobs, 3), "irq": round(self.irq, 3),
                "failures": self.failures, "first_failure": self.first_failure,
                "server_sessions_counted": self.server_sessions}


def check(result: Any) -> str:
    """'' if the peer saw the whole flow, else what went wrong."""
    if len(result.exchanges) != COMMANDS_PER_SESSION:
        return f"{len(result.exchanges)} commands: {result.commands}"
    if result.variables.get("HOTLINE_CASE") != CASE_NUMBER or result.variables.get("HOTLINE_INTENT") != "progress":
        return f"variables {result.variables}"
    if not result.closed_by_server or result.hung_up:
        return "session did not end by the server closing"
    if any(not e.reply.startswith("200 ") for e in result.exchanges):
        return f"replies {[e.reply for e in result.exchanges]}"
    return ""


async def drive(server: ServerProcess, sessions: int, concurrency: int, tag: str) -> Round:
    """`sessions` calls, `concurrency` of them in flight at any time."""
    next_index = iter(range(sessions))
    round_trips: list[float] = []
    durations: list[float] = []
    failures: list[str] = []

    async def caller() -> None:
        for i in next_index:
            peer = AGIPeer(HOST, server.port, ROUTE, keys=KEYS, uniqueid=f"{tag}.{i}", timeout=60.0)
            t0 = time.perf_counter()
            try:
                result = await peer.run()
            except Exception as exc:   # noqa: BLE001 — counted and reported
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            durations.append(time.perf_counter() - t0)
            round_trips.extend(result.round_trips)
            problem = check(result)
            if problem:
                failures.append(problem)

    before = server.stats()
    gc.collect()
    with Meter(server.proc.pid) as m:
        await asyncio.gather(*(caller() for _ in range(min(concurrency, sessions))))
    after = server.stats()
    counted = None
    if before.get("sessions") is not None:
        counted = after["sessions"] - before["sessions"]
    return Round(server.kind, concurrency, sessions, m.wall, [x * 1000 for x in round_trips],
                 [x * 1000 for x in durations], m.child, m.own, m.others, m.irq,
                 len(failures), failures[0] if failures else "", counted)


async def run_all(servers: dict[str, ServerProcess], args) -> dict[int, list[Round]]:
    out: dict[int, list[Round]] = {}
    for kind, server in servers.items():   # warm-up: imports, code paths, socket buffers
        await drive(server, args.warmup, min(args.warmup, args.concurrency), f"warmup-{kind}")
    levels = [args.concurrency] + ([args.low_concurrency] if args.low_concurrency else [])
    for level in levels:
        sessions = args.sessions if level == args.concurrency else args.low_sessions
        out[level] = []
        for r in range(args.rounds):
            order = KINDS if r % 2 == 0 else KINDS[::-1]
            for kind in order:
                rnd = await drive(servers[kind], sessions, level, f"c{level}-r{r}-{kind}")
                out[level].append(rnd)
                print(f"  concurrency {level:>5}  round {r + 1}/{args.rounds}  {kind:<9} "
                      f"{rnd.rate:>8.0f} sessions/s  rt p50 {percentile(rnd.round_trips_ms, 50):6.2f} ms  "
                      f"p99 {percentile(rnd.round_trips_ms, 99):7.2f} ms  server busy {rnd.server_cpu / rnd.seconds:4.0%}"
                      f"  other jobs {rnd.other_jobs:4.0%}  irq {rnd.irq:4.0%}" + (f"  FAILURES {rnd.failures}: {rnd.first_failure}"
                                                              if rnd.failures else ""), flush=True)
    return out


# ---------------------------------------------------------------------------- report


def med(rounds: list[Round], key: str) -> float:
    return statistics.median(r.summary()[key] for r in rounds)


def report(results: dict[int, list[Round]], args) -> dict[str, Any]:
    table: dict[str, Any] = {}
    head = (f"{'concurrency':>11}  {'server':<22}{'sessions/s':>11}{'rt p50 ms':>10}{'rt p99 ms':>10}"
            f"{'session p99 ms':>15}{'srv CPU µs/sess':>16}{'capacity/s':>11}{'srv busy':>9}{'peer CPU µs/sess':>17}"
            f"  {'limited by':<11}"
            f"{'failures':>8}")
    print("\nmedians over rounds (each round: one server, all its sessions)")
    print(head + "\n" + "-" * len(head))
    for level, rounds in results.items():
        row: dict[str, Any] = {}
        for kind in KINDS:
            mine = [r for r in rounds if r.kind == kind]
            row[kind] = {k: med(mine, k) for k in ("sessions_per_s", "rt_p50_ms", "rt_p99_ms", "session_p50_ms",
                                                   "session_p99_ms", "server_cpu_us_per_session",
                                                   "peer_cpu_us_per_session", "server_busy", "other_jobs")}
            row[kind]["failures"] = sum(r.failures for r in mine)
            row[kind]["rounds"] = [r.summary() for r in mine]
            f = row[kind]
            f["limited_by"] = "server" if f["server_busy"] >= 0.9 else "peers/wait"
            print(f"{level:>11}  {LABEL[kind]:<22}{f['sessions_per_s']:>11.0f}{f['rt_p50_ms']:>10.2f}"
                  f"{f['rt_p99_ms']:>10.2f}{f['session_p99_ms']:>15.1f}{f['server_cpu_us_per_session']:>16.0f}"
                  f"{1e6 / f['server_cpu_us_per_session']:>11.0f}"
                  f"{f['server_busy']:>9.0%}{f['peer_cpu_us_per_session']:>17.0f}  {f['limited_by']:<11}"
                  f"{f['failures']:>8}")
        # ratio per pair of rounds (same round index), then the median: pairs ran back to back
        ours = [r for r in rounds if r.kind == "ours"]
        bare = [r for r in rounds if r.kind == "bare"]
        row["ratio_sessions_per_s"] = statistics.median(o.rate / b.rate for o, b in zip(ours, bare))
        row["ratio_server_cpu_per_session"] = statistics.median(
            (b.server_cpu / b.sessions) / (o.server_cpu / o.sessions) for o, b in zip(ours, bare))
        table[str(level)] = row
    print("(rt = command round trip seen by the peer; capacity/s = 1 s / server CPU per session, the rate one CPU "
          "would give the server alone; srv busy = server CPU / wall time: below ~90 % the server was not the limit "
          "— the single peer process, or at low concurrency the ping-pong between the two, was)")
    print("\nratios ours / bare (median of the per-round pairs; each pair ran back to back):")
    for level, row in table.items():
        verdict = "meets" if row["ratio_sessions_per_s"] >= TARGET_RATIO else "BELOW"
        print(f"  concurrency {level:>5}: sessions/s {row['ratio_sessions_per_s']:.3f} ({verdict} the target "
              f"≥ {TARGET_RATIO:.2f});  server capacity (bare server CPU per session / ours) "
              f"{row['ratio_server_cpu_per_session']:.3f}")
    for level, row in table.items():
        p99 = row["ours"]["rt_p99_ms"]
        verdict = "meets" if p99 <= TARGET_P99_MS else "ABOVE"
        print(f"  concurrency {level:>5}: ours p99 round trip {p99:.2f} ms — {verdict} the target of "
              f"{TARGET_P99_MS:g} ms (bare {row['bare']['rt_p99_ms']:.2f} ms)")
    high = table.get(str(args.concurrency))
    if high:
        o = high["ours"]
        # with every session always waiting on the server, a command waits for the server to serve
        # (about) one command of every other session in flight: concurrency × CPU per command
        per_cmd_ms = o["server_cpu_us_per_session"] / 1000 / COMMANDS_PER_SESSION
        state = "is saturated" if o["server_busy"] >= 0.9 else "is NOT saturated in this run"
        print(f"\nat concurrency {args.concurrency} the server {state} (busy {o['server_busy']:.0%}); saturated, a reply "
              f"waits for the server's event loop to get through the commands of the other sessions that are ready "
              f"— up to {args.concurrency} × {per_cmd_ms:.3f} ms of server CPU per command = "
              f"{args.concurrency * per_cmd_ms:.0f} ms: at that concurrency the round trip measures the queue of one "
              f"CPU-bound process, not the cost of a command; the low-concurrency row shows the latter.")
    failed = [r for rounds in results.values() for r in rounds if r.failures]
    if failed:
        print(f"\nFAILURES in {len(failed)} round(s), e.g. {failed[0].first_failure}"
              + ("" if args.backlog >= args.concurrency else f" — with a listen backlog of {args.backlog}, "
                 f"{args.concurrency:,} connections at once overflow the accept queue (see ListenOverflows in "
                 "/proc/net/netstat): connections are reset or wait for a SYN retransmit (1 s)"))
    noisy = [r for rounds in results.values() for r in rounds if r.other_jobs > 0.05]
    if noisy:
        print(f"\nWARNING: in {len(noisy)} round(s) other processes used more than 5 % of the machine "
              f"(up to {max(r.other_jobs for r in noisy):.0%}); those figures are depressed — rerun on a quiet machine.")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fastagi", description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=5000, help="sessions per round at --concurrency (default 5000)")
    p.add_argument("--concurrency", type=int, default=1000, help="sessions in flight (default 1000)")
    p.add_argument("--low-concurrency", type=int, default=50,
                   help="a second, lower concurrency measured the same way (default 50; 0 = skip)")
    p.add_argument("--low-sessions", type=int, default=2000,
                   help="sessions per round at --low-concurrency (default 2000)")
    p.add_argument("--rounds", type=int, default=5, help="rounds per server and concurrency, alternating (default 5)")
    p.add_argument("--warmup", type=int, default=300, help="warm-up sessions per server, not timed (default 300)")
    p.add_argument("--quick", action="store_true", help="1000 sessions, 3 rounds, 500 at low concurrency")
    p.add_argument("--peer-loop", choices=["uvloop", "asyncio"], default="uvloop",
                   help="event loop of the calling peers (default uvloop when installed; the servers always "
                        "run the default asyncio loop)")
    p.add_argument("--backlog", type=int, default=1024,
                   help="listen backlog of both servers (default 1024, AGIServer.start's default; asyncio's own "
                        "default is 100, which overflows at 1,000 connections at once — see the README)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="run both servers under cProfile, write DIR/fastagi-{ours,bare}.pstats and print the top "
                        "functions; profiled figures are not comparable with unprofiled ones")
    p.add_argument("--agi-server", default=DEFAULT_SERVER, metavar="MODULE:CLASS",
                   help=f"the server measured as 'ours' (default {DEFAULT_SERVER}); another one, importable through "
                        "PYTHONPATH, lets you A/B a patched server against the same bare baseline")
    p.add_argument("--no-pin", action="store_true", help="do not pin servers and peers to separate CPUs")
    p.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = p.parse_args(argv)
    if args.quick:
        args.sessions, args.rounds, args.low_sessions, args.warmup = 1000, 3, 500, 100

    server_cpu, peer_cpu = cpu_split(args.no_pin)
    pinned = server_cpu is not None
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    servers = {kind: ServerProcess(kind, server_cpu, args.backlog,
                                   str(args.profile / f"fastagi-{kind}.pstats") if args.profile else None,
                                   args.agi_server)
               for kind in KINDS}
    pin(peer_cpu)
    loop_name = "asyncio"
    try:
        print(f"servers: ours pid {servers['ours'].proc.pid} port {servers['ours'].port}, bare pid "
              f"{servers['bare'].proc.pid} port {servers['bare'].port}"
              + (f", pinned to CPU {server_cpu}; peers pinned to CPU {peer_cpu}" if pinned else ", not pinned"),
              flush=True)
        coro = run_all(servers, args)
        if args.peer_loop == "uvloop":
            try:
                import uvloop
                loop_name = "uvloop"
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    results = runner.run(coro)
            except ImportError:
                results = asyncio.run(coro)
        else:
            results = asyncio.run(coro)
    finally:
        for server in servers.values():
            server.stop()
    if args.agi_server != DEFAULT_SERVER:
        print(f"'ours' is {args.agi_server}")
        LABEL["ours"] = f"ours ({args.agi_server.partition(':')[0][-14:]})"
    print(f"(peers on {loop_name}, servers on the default asyncio loop, listen backlog "
          f"{args.backlog}, {os.cpu_count()} CPUs; {COMMANDS_PER_SESSION} commands per session)")
    table = report(results, args)
    if args.profile:
        import pstats
        for kind in KINDS:
            print(f"\n--- cProfile of the {LABEL[kind]} server process, top 25 by own time ---")
            pstats.Stats(str(args.profile / f"fastagi-{kind}.pstats")).sort_stats("tottime").print_stats(25)
    failures = sum(r.failures for rounds in results.values() for r in rounds)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "fastagi", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "-m", "bench.fastagi", *(argv if argv is not None else sys.argv[1:])]),
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "pinned": pinned,
                        "peer_loop": loop_name, "server_loop": "asyncio", "backlog": args.backlog,
                        "profiled": bool(args.profile), "ours": args.agi_server},
        "targets": {"ratio_sessions_per_s": TARGET_RATIO, "p99_ms": TARGET_P99_MS},
        "results": table,
    }, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(f"\nresults written to {args.json}")
    return 0 if failures == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
