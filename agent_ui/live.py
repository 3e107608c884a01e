"""The one WebSocket of every signed-in page (`/ws`), fed from the event bus.

Each message is an HTML fragment whose elements carry `hx-swap-oob`, so htmx's ws extension puts
it in place: the screen pop on the agent's desk, the seat and phone state, new SMS reports on the
work list. The hub only listens to the bus, so it works the same when the bus crosses processes.
A slow browser gets a bounded queue; when it is full the socket is closed (the page reconnects
and reloads its state), so one stuck client never holds the others up.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from agent_ui.session import COOKIE, SignedIn, lookup
from hotline.bus import BusEvent, EventBus

log = logging.getLogger(__name__)
QUEUE_LIMIT = 100

Render = Callable[["Client", BusEvent], Awaitable[str | None]]


@dataclass(eq=False)
class Client:
    socket: WebSocket
    person: SignedIn
    page: str
    outbox: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))


class LiveHub:
    def __init__(self, app) -> None:
        self.app = app
        self.clients: set[Client] = set()
        self._renderers: list[tuple[str, Render]] = []

    def on(self, pattern: str, render: Render) -> None:
        """For events matching `pattern`, send each client what `render` makes for it (None: nothing)."""
        self._renderers.append((pattern, render))

    def attach(self, bus: EventBus) -> None:
        for pattern, render in self._renderers:
            bus.subscribe(pattern, self._fan_out(render))

    def _fan_out(self, render: Render):
        async def handler(event: BusEvent) -> None:
            for client in list(self.clients):
                try:
                    html = await render(client, event)
                except Exception:
                    log.exception("live update %s for %s failed", event.topic, client.person.username)
                    continue
                if html:
                    self.push(client, html)
        return handler

    def push(self, client: Client, html: str) -> None:
        try:
            client.outbox.put_nowait(html)
        except asyncio.QueueFull:
            log.warning("live page of %s too slow: closed (it reconnects)", client.person.username)
            self.clients.discard(client)
            asyncio.create_task(client.socket.close(code=1013))

    def to_user(self, user_id: int, html: str) -> None:
        for client in list(self.clients):
            if client.person.user_id == user_id:
                self.push(client, html)

    async def serve(self, socket: WebSocket) -> None:
        app = self.app
        origin = socket.headers.get("origin")
        host = socket.headers.get("host", "")
        if origin is not None and origin.split("://", 1)[-1] != host:
            await socket.close(code=1008)   # another site's page: no cross-site socket
            return
        person = await asyncio.to_thread(lookup, app.state.db, app.state.settings, socket.cookies.get(COOKIE))
        if person is None:
            await socket.close(code=1008)
            return
        await socket.accept()
        client = Client(socket, person, socket.query_params.get("page", "")[:20])
        self.clients.add(client)
        writer = asyncio.create_task(self._write(client))
        try:
            while True:
                message = await socket.receive_text()   # pages send nothing but the echo bench's pings
                if message.startswith("echo:"):
                    self.push(client, message)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.clients.discard(client)
            writer.cancel()

    async def _write(self, client: Client) -> None:
        try:
            while True:
                html = await client.outbox.get()
                await client.socket.send_text(html)
        except (WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("live page of %s: send failed", client.person.username)
