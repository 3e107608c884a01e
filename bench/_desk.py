"""What bench/screen_pop.py and bench/desk_pages.py share: a fresh product (temporary data dir,
migrated, units seeded, N agent users), the web app served in this process on this event loop the
way `hotline run` serves it (hotline.cli._serve), the agents' sign-in through the login page, and the
driver: the benchmark's clients (and fakes) in a process of their own, forked before any event loop
or thread exists, talking to this one over a pipe.

The pipe protocol: the driver first sends a port (bench._meter.Child), then gets its job; it may
send ("begin", name) — and waits for "ok", so this process has started a Meter before the work
starts — and ("end", name, info), any messages of its own, and finally ("result", …) or
("error", traceback); then it waits for "stop"."""
from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._meter import Child, Meter, pin

HOST = "127.0.0.1"
PASSWORD = "bench-desk-pass-12319"
FIRST_EXTENSION = 2000
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def extensions(n: int) -> list[str]:
    return [str(FIRST_EXTENSION + i) for i in range(n)]


def isolate_environment(home: Path) -> None:
    """Settings come only from the benchmark: no HOTLINE_* of the caller's shell, no ./hotline.toml
    (HOTLINE_CONFIG names an empty file, which wins over the working directory's)."""
    for key in [k for k in os.environ if k.startswith("HOTLINE_")]:
        del os.environ[key]
    empty = home / "bench.toml"
    empty.write_text("", "utf-8")
    os.environ["HOTLINE_CONFIG"] = str(empty)


@dataclass
class Product:
    home: Path
    settings: Any
    db: Any
    core: Any
    usernames: list[str]


def prepare(agents: int, **overrides: Any) -> tuple[Product, tempfile.TemporaryDirectory]:
    """A temporary data dir, `hotline.migrate.upgrade`, the handling units (as `hotline seed
    --no-demo-users`), `agents` agent users agent000…; settings with `agent_extensions` 2000….
    Returns the product and the temporary directory (clean it up when done)."""
    from case_bridge import CaseCore, seed_units
    from hotline.accounts import add_user
    from hotline.db import Database
    from hotline.migrate import upgrade
    from hotline.settings import load_settings

    tmp = tempfile.TemporaryDirectory(prefix="bench-desk-")
    home = Path(tmp.name)
    isolate_environment(home)
    data = home / "var"
    data.mkdir()
    settings = load_settings(data_dir=data, agent_extensions=extensions(agents), **overrides)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    usernames = [f"agent{i:03d}" for i in range(agents)]
    with db.session() as s:
        seed_units(s)
        for name in usernames:
            add_user(s, name, "agent", PASSWORD, display_name=f"坐席{name[-3:]}")
    return Product(home, settings, db, CaseCore(settings), usernames), tmp


class WebServer:
    """uvicorn.Server for `app` on 127.0.0.1 in this event loop, configured as `_serve` configures it
    (log_config=None, the rest uvicorn's defaults), on port 0: uvicorn binds the listening socket
    itself, as in production, and `port` is the one the kernel gave. (A socket made here and passed
    with `serve(sockets=…)` would be one with proto 0, on whose connections asyncio does not set
    TCP_NODELAY: every response written in two pieces would then wait ~40 ms for a delayed ACK.)"""

    def __init__(self, app: Any) -> None:
        import uvicorn
        self.server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=0, log_config=None))
        self.port = 0
        self.task: asyncio.Task | None = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self, timeout: float = 30) -> None:
        self.task = asyncio.create_task(self.server.serve(), name="uvicorn")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.server.started:
            if self.task.done():
                self.task.result()   # raises what stopped it
                raise RuntimeError("uvicorn stopped before it started")
            if loop.time() > deadline:
                raise RuntimeError(f"uvicorn did not start within {timeout:g} s")
            await asyncio.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), 30)


async def sign_in(client: httpx.AsyncClient, username: str, extension: str = "") -> str:
    """GET /login (the `hotline_login` cookie and the hidden csrf_token), POST /login; returns the
    `hotline_session` cookie's value (also kept in the client's cookie jar)."""
    from agent_ui.session import COOKIE, LOGIN_COOKIE
    page = await client.get("/login")
    if page.status_code != 200:
        raise RuntimeError(f"GET /login for {username}: {page.status_code}")
    found = CSRF_FIELD.search(page.text)
    login_token = page.cookies.get(LOGIN_COOKIE) or client.cookies.get(LOGIN_COOKIE)
    if found is None or not login_token:
        raise RuntimeError(f"GET /login for {username}: no csrf_token field or no {LOGIN_COOKIE} cookie")
    r = await client.post("/login", data={"username": username, "password": PASSWORD, "extension": extension,
                                          "csrf_token": found.group(1), "next": "/"})
    token = r.cookies.get(COOKIE)
    if r.status_code != 303 or not token:
        error = re.search(r'class="error"[^>]*>([^<]*)<', r.text)
        raise RuntimeError(f"POST /login for {username} (extension {extension or '—'}): {r.status_code}"
                           + (f" — {error.group(1)}" if error else ""))
    client.cookies.set(COOKIE, token)
    return token


async def gather_limited(jobs: Iterable[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run the jobs with at most `limit` of them at a time; results in order."""
    sem = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with sem:
            return await job()
    return await asyncio.gather(*(one(j) for j in jobs))


async def sign_in_agents(base: str, usernames: list[str], exts: list[str], *, limit: int = 10,
                         timeout: float = 30) -> list[tuple[httpx.AsyncClient, str]]:
    """One httpx.AsyncClient per agent, signed in with its extension (none where it is "");
    returns (client, session token) per agent, in order. Close the clients when done."""
    clients = [httpx.AsyncClient(base_url=base, timeout=timeout, follow_redirects=False,
                                 headers={"User-Agent": "bench-desk"}) for _ in usernames]
    tokens = await gather_limited([lambda c=c, u=u, e=e: sign_in(c, u, e)
                                   for c, u, e in zip(clients, usernames, exts)], limit)
    return list(zip(clients, tokens))


def ms(seconds: float) -> float:
    return seconds * 1000.0


# ---------------------------------------------------------------------------- the driver process


async def receive(conn: Any) -> Any:
    return await asyncio.to_thread(conn.recv)


_begun: dict[str, float] = {}


async def begin(conn: Any, name: str) -> None:
    """In the driver: tell the product's process that a measured span starts; wait until it metered."""
    conn.send(("begin", name))
    if await receive(conn) != "ok":
        raise RuntimeError(f"no ok for {name}")
    _begun[name] = time.process_time()


def end(conn: Any, name: str, info: Any = None) -> None:
    """In the driver: the span is over; `info` and the driver's CPU seconds in it go to the product's process."""
    conn.send(("end", name, info, time.process_time() - _begun.pop(name)))


def driver_process(conn: Any, cpu: int | None, body: Callable[[Any], Awaitable[Any]]) -> None:
    """The forked driver: pinned to `cpu`, `body(conn)` on a fresh default asyncio loop; it sends the
    port first, and its result (or the error) goes back on the pipe; then it waits for "stop". A
    body that must stay up until then (a fake the product is connected to) calls `finish` itself."""
    pin(cpu)

    async def main() -> None:
        try:
            result = await body(conn)
            if result is not FINISHED:
                await finish(conn, result)
        except BaseException:   # noqa: BLE001 - reported to the parent
            conn.send(("error", traceback.format_exc()))
            await wait_stop(conn)
    asyncio.run(main())


FINISHED = object()


async def finish(conn: Any, result: Any) -> object:
    conn.send(("result", result))
    await wait_stop(conn)
    return FINISHED


async def wait_stop(conn: Any) -> None:
    while await receive(conn) != "stop":
        pass


@dataclass
class Span:
    """One measured span: `meter` (wall time, and other jobs: what the rest of the machine did, in
    clock ticks — meaningful over spans of a second or more); `product_cpu` and `driver_cpu`, CPU
    seconds of each process over the span from their own clocks (not including the meter's scan of
    /proc, which would weigh on spans of a few milliseconds)."""
    name: str
    meter: Meter
    info: Any
    product_cpu: float
    driver_cpu: float


async def follow(driver: Child, handlers: dict[str, Callable[..., Awaitable[None]]] | None = None
                 ) -> tuple[Any, list[Span]]:
    """In the product's process: the driver's messages until its result; a Meter (this process = the
    product, the child = the driver, the rest of the machine) over every begin … end span."""
    open_: dict[str, tuple[Meter, float]] = {}
    spans: list[Span] = []
    while True:
        try:
            message = await receive(driver.conn)
        except EOFError:
            raise RuntimeError(f"the driver process ended (exit code {driver.proc.exitcode})") from None
        kind = message[0]
        if kind == "begin":
            meter = Meter(driver.proc.pid).__enter__()
            open_[message[1]] = (meter, time.process_time())
            driver.conn.send("ok")
        elif kind == "end":
            own = time.process_time()
            meter, own0 = open_.pop(message[1])
            meter.__exit__(None, None, None)
            spans.append(Span(message[1], meter, message[2], own - own0, message[3]))
        elif kind == "result":
            return message[1], spans
        elif kind == "error":
            raise RuntimeError("the driver process failed:\n" + message[1])
        else:
            await (handlers or {})[kind](*message[1:])
