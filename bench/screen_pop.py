"""Screen-pop latency: an `AgentConnect` written by the fake Asterisk → the pop on the agent's desk
socket, against a bare echo through the same server measured in the same run.

Setup: a temporary data dir, migrated (`hotline.migrate.upgrade`), the handling units seeded,
`--agents` agent users (default 100) with `agent_extensions` 2000…2099; `tests.support.fake_ami.FakeAMI`
on 127.0.0.1 as the PBX; the product started in this process on this event loop as `hotline run`
starts it (`hotline.cli._serve`): `Telephony(settings, db, bus, core=core, agi=False, ami=True)`, the
app of `agent_ui.create_app(settings, db=db, bus=bus, core=core)` with `app.state.telephony`, served
by `uvicorn.Server` on a free port. Every agent signs in through the login page (GET /login for the
`hotline_login` cookie and the form's csrf_token, POST /login with its extension → 303 and the
`hotline_session` cookie) and opens the desk's WebSocket (`/ws?page=desk`, with its cookie and an
Origin matching the Host).

Measured, each as p50/p99 over the same number of samples (`--pops`, default 1,000), in blocks of
100 that alternate between the two:

- **pop** (the figure): `FakeAMI.send_event("AgentConnect", …)` with `Interface: PJSIP/<ext>` of the
  next agent (round-robin, one at a time; each call a new Uniqueid and a new 138… caller) → TCP →
  AMIClient → CallCentreState → bus → live hub (render: the call panel with the caller's facts and
  earlier cases, read in a worker thread) → WebSocket → the message at that agent's client, checked
  to be the HTML of `id="call-box"` with that Uniqueid. Timed from just before `send_event` to the
  message received.
- **echo** (the baseline): "echo:<n>" sent on agent 0's socket, which the hub sends straight back
  (agent_ui/live.py `serve`): the cost of the socket, the hub's queue and the client, without the
  AMI link, the bus and the render.

Every socket is read all the time: a pop at the wrong agent, a second copy, or a pop that does not
arrive within `--timeout` seconds is counted and reported (exit status 2), not timed.

The product (telephony and web app on one default asyncio loop, as `hotline run`) runs in this
process; the fake and the 100 WebSocket clients run in a driver process of their own, forked first,
each pinned to its own CPU (`--no-pin` to not), so the clients' work is not counted as the product's
and both timestamps of a sample are taken in the driver. Printed: p50/p99/max of both, the ratios
pop/echo, the product's CPU per pop and per echo, how busy the rest of the machine was, the target.

    .venv/bin/python -m bench.screen_pop [--pops 1000] [--agents 100] [--warmup 20] [--timeout 10] [--no-pin]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._desk import (FINISHED, HOST, Span, WebServer, begin, driver_process, end, finish, follow, ms, prepare,
                         receive, sign_in_agents)
from bench._meter import Child, cpu_split, pin
from bench.case_intake import percentile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "screen_pop.json"
TARGET_P99_MS = 100.0
AMI_SECRET = "bench-ami-secret"
QUEUE = "city"
BLOCK = 100


# ---------------------------------------------------------------------------- the driver (its own process)


@dataclass(eq=False)
class Desk:
    """One agent's desk socket, read all the time by its own task."""
    index: int
    extension: str
    ws: Any
    inbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    reader: asyncio.Task | None = None
    closed: str = ""

    async def read(self) -> None:
        try:
            async for message in self.ws:
                self.inbox.put_nowait((time.perf_counter(), message))
        except Exception as exc:   # noqa: BLE001 - reported, not raised
            self.closed = f"{type(exc).__name__}: {exc}"
        else:
            self.closed = f"closed by the server (code {self.ws.close_code})"


@dataclass
class Tally:
    pops: list[float] = field(default_factory=list)
    echoes: list[float] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)       # pops/echoes that did not arrive in time
    wrong: list[str] = field(default_factory=list)         # a message that was not the expected one
    stray: list[str] = field(default_factory=list)         # messages at agents that were not called


def short(message: Any, n: int = 160) -> str:
    text = message if isinstance(message, str) else repr(message)
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"


def drain_others(desks: list[Desk], tally: Tally, keep: Desk | None) -> None:
    for d in desks:
        if d is keep:
            continue
        while not d.inbox.empty():
            _, message = d.inbox.get_nowait()
            tally.stray.append(f"agent {d.index} (ext {d.extension}): {short(message)}")


async def one_pop(fake: Any, desks: list[Desk], n: int, tally: Tally | None, timeout: float) -> None:
    desk = desks[n % len(desks)]
    uid = f"bench1-1795300000.{n}"
    caller = f"138{n % 100_000_000:08d}"
    headers = {"Queue": QUEUE, "Uniqueid": uid, "Channel": f"PJSIP/trunk-{n:08x}", "CallerIDNum": caller,
               "CallerIDName": "<unknown>", "Interface": f"PJSIP/{desk.extension}",
               "MemberName": f"PJSIP/{desk.extension}", "DestChannel": f"PJSIP/{desk.extension}-{n:08x}",
               "HoldTime": "4", "RingTime": "2"}
    t0 = time.perf_counter()
    await fake.send_event("AgentConnect", headers)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            t1, message = await asyncio.wait_for(desk.inbox.get(), max(deadline - loop.time(), 0.001))
        except TimeoutError:
            if tally is not None:
                tally.missing.append(f"pop {n} ({uid}) to agent {desk.index} (ext {desk.extension}): nothing "
                                     f"within {timeout:g} s" + (f"; socket {desk.closed}" if desk.closed else ""))
            return
        if isinstance(message, str) and 'id="call-box"' in message and f'data-uniqueid="{uid}"' in message:
            if tally is not None:
                tally.pops.append(t1 - t0)
            return
        if tally is not None:
            tally.wrong.append(f"pop {n} ({uid}) at agent {desk.index}: got {short(message)}")


async def one_echo(desk: Desk, n: int, tally: Tally | None, timeout: float) -> None:
    text = f"echo:{n}"
    t0 = time.perf_counter()
    await desk.ws.send(text)
    try:
        t1, message = await asyncio.wait_for(desk.inbox.get(), timeout)
    except TimeoutError:
        if tally is not None:
            tally.missing.append(f"echo {n}: nothing within {timeout:g} s")
        return
    if message != text:
        if tally is not None:
            tally.wrong.append(f"echo {n}: got {short(message)}")
        return
    if tally is not None:
        tally.echoes.append(t1 - t0)


async def open_desks(port: int, tokens: list[str], exts: list[str], timeout: float = 30) -> list[Desk]:
    from websockets.asyncio.client import connect

    from agent_ui.session import COOKIE
    desks = []
    for i, (token, ext) in enumerate(zip(tokens, exts)):
        ws = await connect(f"ws://{HOST}:{port}/ws?page=desk", origin=f"http://{HOST}:{port}",
                           additional_headers={"Cookie": f"{COOKIE}={token}"}, open_timeout=timeout,
                           max_size=2 ** 22, ping_interval=None)
        desk = Desk(i, ext, ws)
        desk.reader = asyncio.create_task(desk.read(), name=f"desk-{i}")
        desks.append(desk)
    return desks


async def drive(conn: Any) -> object:
    """The driver: the fake PBX and the agents' clients; measures, returns the samples."""
    from tests.support.fake_ami import FakeAMI
    fake = await FakeAMI.start(secret=AMI_SECRET, auth_delay=0.1)
    fake.queues = {QUEUE: {"members": []}}
    conn.send(fake.port)
    signed: list[tuple[Any, str]] = []
    desks: list[Desk] = []
    try:
        job = await receive(conn)
        if job == "stop":
            return FINISHED
        signed = await sign_in_agents(f"http://{HOST}:{job['port']}", job["usernames"], job["extensions"])
        desks = await open_desks(job["port"], [t for _, t in signed], job["extensions"])
        conn.send(("open", len(desks)))
        if await receive(conn) != "go":
            raise RuntimeError("no go from the product's process")
        await asyncio.sleep(0.2)
        tally = Tally()
        drain_others(desks, tally, None)
        early, tally.stray = tally.stray, []

        warmup, pops, timeout = job["warmup"], job["pops"], job["timeout"]
        for n in range(warmup):   # code paths, templates, thread pools, sockets: not timed
            await one_pop(fake, desks, n, None, timeout)
            await one_echo(desks[0], n, None, timeout)
        drain_others(desks, Tally(), None)
        fake.sent.clear()
        n_pop = n_echo = warmup
        await begin(conn, "all")
        while n_pop < warmup + pops or n_echo < warmup + pops:
            k = min(BLOCK, warmup + pops - n_echo)
            await begin(conn, "echo")
            for _ in range(k):
                await one_echo(desks[0], n_echo, tally, timeout)
                n_echo += 1
            end(conn, "echo", k)
            k = min(BLOCK, warmup + pops - n_pop)
            await begin(conn, "pop")
            for _ in range(k):
                desk = desks[n_pop % len(desks)]
                await one_pop(fake, desks, n_pop, tally, timeout)
                drain_others(desks, tally, desk)
                n_pop += 1
            end(conn, "pop", k)
            fake.sent.clear()   # the fake keeps every write; nothing to keep here
        end(conn, "all", pops)
        await asyncio.sleep(0.2)   # a late or second copy shows up here
        drain_others(desks, tally, None)
        result = {"pops": tally.pops, "echoes": tally.echoes, "missing": tally.missing, "wrong": tally.wrong,
                  "stray": tally.stray, "early": early, "closed": [f"agent {d.index}: {d.closed}" for d in desks
                                                                   if d.closed]}
        return await finish(conn, result)   # the fake stays up until the product has stopped
    finally:
        for d in desks:
            await d.ws.close()
            if d.reader is not None:
                await asyncio.gather(d.reader, return_exceptions=True)
        for client, _ in signed:
            await client.aclose()
        await fake.stop()


# ---------------------------------------------------------------------------- the product (this process)


async def wait_connected(telephony: Any, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while telephony.ami.status != "connected":
        if loop.time() > deadline:
            raise RuntimeError(f"the product's AMI link did not come up: status {telephony.ami.status!r}, "
                               f"{telephony.ami.last_error!r}")
        await asyncio.sleep(0.02)


async def run(args: argparse.Namespace, driver: Child) -> dict[str, Any]:
    from agent_ui import create_app
    from hotline.bus import InProcessBus
    from ivr import Telephony

    t_setup = time.perf_counter()
    product, tmp = await asyncio.to_thread(
        prepare, args.agents, ami_host=HOST, ami_port=driver.port, ami_secret=AMI_SECRET, ami_ping_seconds=3600.0,
        ami_ping_timeout_seconds=60.0, city_queue=QUEUE)
    settings, db, core = product.settings, product.db, product.core
    bus = InProcessBus()
    telephony = Telephony(settings, db, bus, core=core, agi=False, ami=True)
    server: WebServer | None = None
    try:
        await telephony.start()
        app = create_app(settings, db=db, bus=bus, core=core)
        app.state.telephony = telephony
        server = WebServer(app)
        await server.start()
        await wait_connected(telephony)
        hub = app.state.live

        async def opened(n: int) -> None:   # the hub registers a client just after the handshake
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while len(hub.clients) < n:
                if loop.time() > deadline:
                    raise RuntimeError(f"only {len(hub.clients)} of {n} desk sockets registered with the hub")
                await asyncio.sleep(0.01)
            print(f"setup: {args.agents} agents signed in with extensions {settings.agent_extensions[0]}…"
                  f"{settings.agent_extensions[-1]}, {n} desk sockets open, AMI link {telephony.ami.status} "
                  f"(FakeAMI port {driver.port}, web port {server.port}) in {time.perf_counter() - t_setup:.1f} s",
                  flush=True)
            driver.conn.send("go")

        driver.conn.send({"port": server.port, "usernames": product.usernames, "extensions": settings.agent_extensions,
                          "pops": args.pops, "warmup": args.warmup, "timeout": args.timeout})
        result, spans = await follow(driver, {"open": opened})
        result["spans"] = spans
        result["ami"] = {"status": telephony.ami.status, "connects": telephony.ami.connects,
                         "handler_errors": telephony.ami.handler_errors,
                         "events_seen": telephony.ami.state.events_seen}
        result["recorder_written"] = getattr(telephony.recorder, "written", None)
        return result
    finally:
        if server is not None:
            await server.stop()
        await telephony.stop()
        db.dispose()
        tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.screen_pop", description=__doc__.split("\n\n")[0])
    p.add_argument("--pops", type=int, default=1000, help="pops measured, and as many echoes (default 1,000)")
    p.add_argument("--agents", type=int, default=100, help="agents signed in with a desk socket (default 100)")
    p.add_argument("--warmup", type=int, default=20, help="pops and echoes before the measurement (default 20)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one pop or echo (default 10)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the product and the driver to separate CPUs")
    p.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = p.parse_args(argv)
    if args.agents < 1 or args.pops < 1:
        p.error("--agents and --pops must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    driver_cpu, product_cpu = cpu_split(args.no_pin)
    driver = Child(driver_process, (driver_cpu, drive), "screen-pop-driver")
    pin(product_cpu)
    try:
        out = asyncio.run(run(args, driver))
    finally:
        driver.stop()

    spans: list[Span] = out["spans"]
    rows = []
    for name, key, kind in (("pop: AgentConnect → desk socket", "pops", "pop"), ("echo: same server, bare", "echoes", "echo")):
        v = out[key]
        done = [s for s in spans if s.name == kind]
        n = sum(s.info for s in done) or 1
        rows.append({"name": name, "samples": len(v), "p50": ms(percentile(v, 50)), "p99": ms(percentile(v, 99)),
                     "max": ms(max(v)) if v else float("nan"),
                     "product_cpu_ms": ms(sum(s.product_cpu for s in done) / n),
                     "driver_cpu_ms": ms(sum(s.driver_cpu for s in done) / n)})
    pop, echo = rows
    whole = next(s for s in spans if s.name == "all")
    head = (f"{'path':<36}{'samples':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'product CPU ms':>16}"
            f"{'driver CPU ms':>15}")
    pinned = f"product on CPU {product_cpu}, driver on CPU {driver_cpu}" if driver_cpu is not None else "not pinned"
    print(f"\n{args.agents} agents, {args.pops:,} pops round-robin one at a time, {args.pops:,} echoes on one socket "
          f"({os.cpu_count()} CPUs, {pinned}, Python {platform.python_version()}, default asyncio loop)")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['name']:<36}{r['samples']:>9}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['max']:>9.2f}"
              f"{r['product_cpu_ms']:>16.3f}{r['driver_cpu_ms']:>15.3f}")
    print(f"(CPU ms: per pop or echo, of the product's process — all its threads — and of the driver's. The measurement "
          f"took {whole.meter.wall:.1f} s; other processes used {whole.meter.others:.0%} of the machine meanwhile)")
    ratio50, ratio99 = pop["p50"] / echo["p50"], pop["p99"] / echo["p99"]
    print(f"\nratio pop / echo: p50 {ratio50:.1f}×, p99 {ratio99:.1f}×")
    verdict = "meets" if pop["p99"] <= TARGET_P99_MS else "ABOVE"
    print(f"pop p99 {pop['p99']:.2f} ms — {verdict} the target of p99 ≤ {TARGET_P99_MS:g} ms (echo p99 {echo['p99']:.2f} ms)")
    worst = whole.meter.others
    if worst > 0.05:
        print(f"WARNING: other processes used up to {worst:.0%} of the machine during the measurement; the figures "
              f"are depressed — rerun on a quiet machine.")
    failed = bool(out["missing"] or out["wrong"] or out["stray"] or out["closed"])
    for label, items in (("missing", out["missing"]), ("wrong message", out["wrong"]),
                         ("at an agent that was not called", out["stray"]), ("socket closed", out["closed"]),
                         ("on the sockets before the first pop (not counted)", out["early"])):
        if items:
            print(f"\n{len(items)} {label}:" + "".join(f"\n  {line}" for line in items[:10])
                  + (f"\n  … and {len(items) - 10} more" if len(items) > 10 else ""))
    print(f"AMI link at the end: {out['ami']}; call rows written by the recorder: {out['recorder_written']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "screen_pop", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "-m", "bench.screen_pop", *(argv if argv is not None else sys.argv[1:])]),
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "pinned": driver_cpu is not None},
        "agents": args.agents, "pops": args.pops, "warmup": args.warmup, "target_p99_ms": TARGET_P99_MS,
        "rows": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        "ratio_pop_to_echo": {"p50": round(ratio50, 2), "p99": round(ratio99, 2)},
        "measurement_seconds": round(whole.meter.wall, 3), "other_jobs": round(whole.meter.others, 3),
        "failures": {"missing": out["missing"], "wrong": out["wrong"], "stray": out["stray"], "closed": out["closed"]},
        "before_first_pop": out["early"], "ami": out["ami"],
    }, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(f"results written to {args.json}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
