"""The life cycle that the fake protocol peers (:class:`~tests.support.fake_ami.FakeAMI`,
:class:`~tests.support.smsc.FakeSMSC`) share: a TCP server on 127.0.0.1 (ephemeral port unless one is
given), ``stop`` that aborts every connection and cancels the fake's own tasks, use as an async context
manager, a change notification that waits are woken by, and tracking of spawned tasks.

A subclass implements ``_accept`` (the per-connection handler given to :func:`asyncio.start_server`)
and ``_open_writers`` (the stream writers of the connections open now), and calls ``_notify`` whenever
something a test may wait on has changed.
"""
from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Self


class PeerServer(abc.ABC):
    """Base of the fake peers: listening, stopping, waiting and task tracking."""

    _label = "PeerServer"  # how timeouts name the fake

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._changed = asyncio.Event()

    @abc.abstractmethod
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection (the peer's protocol)."""

    @abc.abstractmethod
    def _open_writers(self) -> Iterable[asyncio.StreamWriter]:
        """The connections open now, for stop() to abort."""

    # --- life cycle ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, abort every connection and cancel pending work."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._open_writers()):
            writer.transport.abort()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        if self._server is None:
            await self._listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def listening(self) -> bool:
        return self._server is not None

    # --- waiting ---------------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, predicate: Callable[[], object], timeout: float, what: str,
                    describe: Callable[[], str]) -> None:
        """Wait until ``predicate()`` is truthy; on timeout raise ``TimeoutError`` ending in ``describe()``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self._label}: {what} not reached within {timeout} s; {describe()}")
            changed = self._changed
            # woken by _notify(); a short poll also catches state changed by plain assignment
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, 0.05))

    # --- tasks -----------------------------------------------------------------------------------

    def _track(self, task: asyncio.Task) -> asyncio.Task:
        """Have :meth:`stop` cancel ``task`` if it is still running then."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _track_current_task(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._track(task)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        return self._track(asyncio.create_task(coro))
