"""Desk page latency: 100 signed-in agents loading their pages at once, against a static file served
by the same app in the same run.

Setup: a temporary data dir, migrated (`hotline.migrate.upgrade`), the handling units seeded,
`--agents` agent users (default 100), `--cases` cases (default 5) made with
`case_bridge.CaseCore.create_case` (福田区华强北路赛格广场, E0102, 13800138000); the app of
`agent_ui.create_app(settings, db=db, bus=bus, core=core)` served by `uvicorn.Server` on a free port
in this process, on the default asyncio loop, without telephony (`app.state.telephony` is None: no
AMI). The agents run in a driver process of their own (forked first; the product and the driver
pinned to one CPU each, `--no-pin` to not), each with its own `httpx.AsyncClient`, signed in through
the login page (GET /login, POST /login with its extension → 303 and the `hotline_session` cookie).

Each agent then, in order — what the desk does when an agent starts a call and types its address:

- **desk**: `GET /desk`;
- **case**: `GET /cases/{number}` for `--case-views` of the cases (default 3, rotating);
- **place**: `GET /desk/place?address_text=<prefix>&category_key=&district_code=&place_confirmed=`
  (the fields the form's htmx request carries, with `HX-Request`) for every successive prefix, from
  2 characters to the whole text, of a real address: one per agent from
  tests/data/dev_addresses_2016.csv (seeded pick; 9–31 characters).

The agents run at once with at most `--concurrency` requests in flight (default 20; a request is timed
from the moment it may go — after it got its slot — to its body read).
**static** (the baseline): the same agents, the same number of requests each and the same concurrency,
`GET /static/app.css` (Starlette's StaticFiles, 6 KB). Each of `--rounds` rounds (default 2) runs
both phases, the order alternating; every response is checked (status 200 and what the page must
hold; a failed request is counted and shown, not timed, and makes the exit status 2). Printed per
phase: requests/s and the CPU per request of the product's process and of the driver's; per request
kind: count, p50/p95/p99/max, the ratio of each p95 to the static p95, and the target (p95 ≤ 150 ms
per page kind). There is no think time: every agent sends its next request as soon as the last one
is answered, so the product runs saturated and the latencies at 20 in flight are mostly queueing.

    .venv/bin/python -m bench.desk_pages [--agents 100] [--concurrency 20] [--rounds 2] [--cases 5]
                                         [--case-views 3] [--seed 12319] [--no-pin]
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import platform
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._desk import Product, Span, WebServer, begin, driver_process, end, follow, ms, prepare, receive, sign_in_agents
from bench._meter import Child, cpu_split, pin
from bench.case_intake import percentile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "desk_pages.json"
ADDRESSES = ROOT / "tests" / "data" / "dev_addresses_2016.csv"
STATIC_PATH = "/static/app.css"
TARGET_P95_MS = 150.0
KINDS = ("desk", "case", "place")
HX = {"HX-Request": "true", "HX-Target": "placement", "HX-Trigger": "address_text"}


@dataclass
class Req:
    kind: str
    path: str
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    expect: str = ""          # a text the body must hold


@dataclass
class Samples:
    times: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in (*KINDS, "static")})
    errors: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)


def pick_addresses(n: int, seed: int) -> list[str]:
    with ADDRESSES.open(encoding="utf-8") as f:
        rows = [r["address"].strip() for r in csv.DictReader(f) if 9 <= len(r["address"].strip()) <= 31]
    return random.Random(seed).sample(rows, n) if n <= len(rows) else [rows[i % len(rows)] for i in range(n)]


def make_cases(product: Product, n: int) -> list[str]:
    from case_bridge import NewCase
    numbers = []
    with product.db.session() as s:
        for i in range(n):
            made = product.core.create_case(s, NewCase(
                description=f"华强北路赛格广场门口垃圾堆积两天没人清运（测试 {i + 1}）",
                address_text="福田区华强北路赛格广场", category_key="E0102", caller_phone="13800138000"))
            numbers.append(made.case.number)
    return numbers


def agent_script(i: int, address: str, cases: list[str], case_views: int) -> list[Req]:
    script = [Req("desk", "/desk", expect='id="call-box"')]
    for k in range(case_views):
        number = cases[(i + k) % len(cases)]
        script.append(Req("case", f"/cases/{number}", expect=number))
    for stop in range(2, len(address) + 1):
        script.append(Req("place", "/desk/place", params={"address_text": address[:stop], "category_key": "",
                                                          "district_code": "", "place_confirmed": ""},
                          headers=HX, expect="placement"))
    return script


async def fetch(client: Any, req: Req, sem: asyncio.Semaphore, samples: Samples | None, static_size: int) -> None:
    async with sem:
        t0 = time.perf_counter()
        try:
            r = await client.get(req.path, params=req.params, headers=req.headers)
            body = r.content
            t1 = time.perf_counter()
        except Exception as exc:   # noqa: BLE001 - counted and shown
            if samples is not None:
                samples.errors[f"{req.kind}: {type(exc).__name__}"] += 1
                if len(samples.examples) < 10:
                    samples.examples.append(f"{req.kind} {req.path} {req.params or ''}: {type(exc).__name__}: {exc}")
            return
    if samples is None:
        return
    ok = r.status_code == 200 and (len(body) == static_size if req.kind == "static" else req.expect in r.text)
    if not ok:
        samples.errors[f"{req.kind}: HTTP {r.status_code}"
                       + ("" if r.status_code != 200 else " without the expected content")] += 1
        if len(samples.examples) < 10:
            samples.examples.append(f"{req.kind} {req.path} {req.params or ''}: {r.status_code} "
                                    f"{' '.join(r.text[:200].split())}")
        return
    samples.times[req.kind].append(t1 - t0)


async def run_agents(clients: list[Any], scripts: list[list[Req]], concurrency: int, samples: Samples | None,
                     static_size: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def agent(client: Any, script: list[Req]) -> None:
        for req in script:   # one agent's requests one after the other, as its page sends them
            await fetch(client, req, sem, samples, static_size)
    await asyncio.gather(*(agent(c, s) for c, s in zip(clients, scripts)))


async def drive(conn: Any) -> Samples:
    """The driver: the agents' clients; signs them in, runs the rounds, returns the samples."""
    conn.send(0)   # no port to offer
    job = await receive(conn)
    signed = await sign_in_agents(job["base"], job["usernames"], job["extensions"])
    clients = [c for c, _ in signed]
    try:
        pages, statics, size = job["pages"], job["statics"], job["static_size"]
        # warm-up: every agent's first desk, case and place request and a static one (not timed)
        warm = [[s[0], s[1], s[-1], Req("static", STATIC_PATH)] for s in pages]
        await run_agents(clients, warm, job["concurrency"], None, size)
        samples = Samples()
        for r in range(job["rounds"]):
            order = (("static", statics), ("pages", pages)) if r % 2 == 0 else (("pages", pages), ("static", statics))
            for name, scripts in order:
                await begin(conn, name)
                t0 = time.perf_counter()
                await run_agents(clients, scripts, job["concurrency"], samples, size)
                end(conn, name, {"round": r + 1, "requests": sum(map(len, scripts)), "seconds": time.perf_counter() - t0})
        return samples
    finally:
        for client in clients:
            await client.aclose()


async def run(args: argparse.Namespace, driver: Child) -> dict[str, Any]:
    from agent_ui import create_app
    from agent_ui.app import STATIC
    from hotline.bus import InProcessBus

    t_setup = time.perf_counter()
    product, tmp = await asyncio.to_thread(prepare, args.agents)
    cases = await asyncio.to_thread(make_cases, product, args.cases)
    addresses = pick_addresses(args.agents, args.seed)
    static_size = (STATIC / STATIC_PATH.removeprefix("/static/")).stat().st_size
    app = create_app(product.settings, db=product.db, bus=InProcessBus(), core=product.core)
    server = WebServer(app)
    try:
        await server.start()
        pages = [agent_script(i, addresses[i], cases, args.case_views) for i in range(args.agents)]
        statics = [[Req("static", STATIC_PATH)] * len(s) for s in pages]
        print(f"setup: {args.agents} agents, {len(cases)} cases, web port {server.port}, "
              f"{sum(map(len, pages)):,} page requests a round ({args.case_views} case views and "
              f"{min(map(len, addresses)) - 1}–{max(map(len, addresses)) - 1} address prefixes per agent), "
              f"in {time.perf_counter() - t_setup:.1f} s; signing in…", flush=True)
        driver.conn.send({"base": server.base, "usernames": product.usernames,
                          "extensions": product.settings.agent_extensions, "pages": pages, "statics": statics,
                          "static_size": static_size, "concurrency": args.concurrency, "rounds": args.rounds})

        async def progress(*_: Any) -> None:
            pass
        samples, spans = await follow(driver, {"progress": progress})
        return {"samples": samples, "spans": spans, "cases": cases, "addresses": addresses}
    finally:
        await server.stop()
        product.db.dispose()
        tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.desk_pages", description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", type=int, default=100, help="signed-in agents (default 100)")
    p.add_argument("--concurrency", type=int, default=20, help="requests in flight at most (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of both phases (default 2)")
    p.add_argument("--cases", type=int, default=5, help="cases made before the run (default 5)")
    p.add_argument("--case-views", type=int, default=3, help="case pages each agent loads a round (default 3)")
    p.add_argument("--seed", type=int, default=12319, help="the pick of addresses (default 12319)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the product and the driver to separate CPUs")
    p.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = p.parse_args(argv)
    if args.agents < 1 or args.cases < 1 or args.concurrency < 1 or args.rounds < 1:
        p.error("--agents, --cases, --concurrency and --rounds must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    driver_cpu, product_cpu = cpu_split(args.no_pin)
    driver = Child(driver_process, (driver_cpu, drive), "desk-pages-driver")
    pin(product_cpu)
    try:
        out = asyncio.run(run(args, driver))
    finally:
        driver.stop()
    samples: Samples = out["samples"]
    spans: list[Span] = out["spans"]
    print(f"{'round':>5}  {'phase':<7}{'requests':>9}{'seconds':>9}{'req/s':>8}{'product CPU ms/req':>20}"
          f"{'driver CPU ms/req':>19}{'other jobs':>12}")
    for sp in spans:
        n = sp.info["requests"]
        print(f"{sp.info['round']:>5}  {sp.name:<7}{n:>9,}{sp.meter.wall:>9.2f}{n / sp.meter.wall:>8,.0f}"
              f"{ms(sp.product_cpu / n):>20.2f}{ms(sp.driver_cpu / n):>19.2f}{sp.meter.others:>11.0%}")
    static95 = percentile(samples.times["static"], 95)
    head = f"{'request':<44}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'p95 ÷ static':>14}"
    pinned = f"product on CPU {product_cpu}, driver on CPU {driver_cpu}" if driver_cpu is not None else "not pinned"
    print(f"\n{args.agents} agents, {args.concurrency} requests in flight, {args.rounds} round(s) "
          f"({os.cpu_count()} CPUs, {pinned}, Python {platform.python_version()}, default asyncio loop, SQLite)")
    print(head + "\n" + "-" * len(head))
    labels = {"desk": "desk: GET /desk", "case": "case: GET /cases/{number}",
              "place": "place: GET /desk/place?address_text=…", "static": f"static: GET {STATIC_PATH} (baseline)"}
    figures: dict[str, dict[str, float]] = {}
    for kind in (*KINDS, "static"):
        v = samples.times[kind]
        f = {"count": len(v), "p50": ms(percentile(v, 50)), "p95": ms(percentile(v, 95)),
             "p99": ms(percentile(v, 99)), "max": ms(max(v)) if v else float("nan")}
        f["p95_ratio_to_static"] = f["p95"] / ms(static95)
        figures[kind] = f
        print(f"{labels[kind]:<44}{f['count']:>7,}{f['p50']:>9.2f}{f['p95']:>9.2f}{f['p99']:>9.2f}{f['max']:>9.2f}"
              f"{f['p95_ratio_to_static']:>13.1f}×")
    page_v = [t for k in KINDS for t in samples.times[k]]
    all_pages = {"count": len(page_v), "p50": ms(percentile(page_v, 50)), "p95": ms(percentile(page_v, 95))}
    print(f"{'all page requests':<44}{all_pages['count']:>7,}{all_pages['p50']:>9.2f}{all_pages['p95']:>9.2f}")
    phases: dict[str, dict[str, float]] = {}
    for name in ("pages", "static"):
        ph = [x for x in spans if x.name == name]
        n, wall = sum(x.info["requests"] for x in ph), sum(x.meter.wall for x in ph)
        phases[name] = {"requests": n, "seconds": wall, "requests_per_s": n / wall,
                        "product_cpu_ms_per_request": ms(sum(x.product_cpu for x in ph) / n),
                        "driver_cpu_ms_per_request": ms(sum(x.driver_cpu for x in ph) / n)}
    print(f"pages phase: {phases['pages']['requests_per_s']:,.0f} requests/s, product CPU "
          f"{phases['pages']['product_cpu_ms_per_request']:.2f} ms a request; static phase: "
          f"{phases['static']['requests_per_s']:,.0f} requests/s, {phases['static']['product_cpu_ms_per_request']:.2f} ms "
          f"(all {args.rounds} round(s))")
    print()
    for kind in KINDS:
        verdict = "meets" if figures[kind]["p95"] <= TARGET_P95_MS else "ABOVE"
        print(f"{kind:<6} p95 {figures[kind]['p95']:7.2f} ms — {verdict} the target of p95 ≤ {TARGET_P95_MS:g} ms")
    worst = max(x.meter.others for x in spans)
    if worst > 0.05:
        print(f"WARNING: other processes used up to {worst:.0%} of the machine during a phase; the figures are depressed.")
    if samples.errors:
        print(f"\n{sum(samples.errors.values())} failed requests (not timed): "
              + ", ".join(f"{k} ×{n}" for k, n in samples.errors.most_common()))
        for line in samples.examples:
            print(f"  {line}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "desk_pages", "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "-m", "bench.desk_pages", *(argv if argv is not None else sys.argv[1:])]),
        "environment": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                        "pinned": driver_cpu is not None},
        "agents": args.agents, "concurrency": args.concurrency, "rounds": args.rounds, "cases": out["cases"],
        "target_p95_ms": TARGET_P95_MS,
        "ms": {k: {kk: round(vv, 3) for kk, vv in f.items()} for k, f in figures.items()},
        "all_pages_ms": {k: round(v, 3) for k, v in all_pages.items()},
        "phases": {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in phases.items()},
        "spans": [{"round": x.info["round"], "phase": x.name, "requests": x.info["requests"],
                   "seconds": round(x.meter.wall, 3), "product_cpu_s": round(x.product_cpu, 3),
                   "driver_cpu_s": round(x.driver_cpu, 3), "other_jobs": round(x.meter.others, 3)} for x in spans],
        "errors": dict(samples.errors), "error_examples": samples.examples, "addresses": out["addresses"],
    }, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(f"\nresults written to {args.json}")
    return 2 if samples.errors else 0


if __name__ == "__main__":
    sys.exit(main())
