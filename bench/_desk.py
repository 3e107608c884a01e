"""What bench/screen_pop.py and bench/desk_pages.py share: a fresh product (temporary data dir,
migrated, units seeded, N agent users), the web app served in this process on this event loop the
way `hotline run` serves it (hotline.cli._serve), and the agents' sign-in through the login page."""
from __future__ import annotations

import asyncio
import os
import re
import socket
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

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


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    return sock


class WebServer:
    """uvicorn.Server for `app` on 127.0.0.1 (free port) in this event loop, configured as `_serve`
    configures it (log_config=None, the rest uvicorn's defaults)."""

    def __init__(self, app: Any) -> None:
        import uvicorn
        self.sock = listening_socket()
        self.port: int = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=self.port, log_config=None))
        self.task: asyncio.Task | None = None

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self, timeout: float = 30) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name="uvicorn")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.server.started:
            if self.task.done():
                self.task.result()   # raises what stopped it
                raise RuntimeError("uvicorn stopped before it started")
            if loop.time() > deadline:
                raise RuntimeError(f"uvicorn did not start within {timeout:g} s")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), 30)
        self.sock.close()


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


async def sign_in_agents(base: str, product: Product, *, with_extension: bool, limit: int = 10,
                         timeout: float = 30) -> list[tuple[httpx.AsyncClient, str]]:
    """One httpx.AsyncClient per agent, signed in (with its extension 2000+i when `with_extension`);
    returns (client, session token) per agent, in order. Close the clients when done."""
    exts = product.settings.agent_extensions
    clients = [httpx.AsyncClient(base_url=base, timeout=timeout, follow_redirects=False,
                                 headers={"User-Agent": "bench-desk"}) for _ in product.usernames]
    tokens = await gather_limited(
        [lambda c=c, u=u, e=e: sign_in(c, u, e if with_extension else "")
         for c, u, e in zip(clients, product.usernames, exts)], limit)
    return list(zip(clients, tokens))


def ms(seconds: float) -> float:
    return seconds * 1000.0
