"""The event bus: parts publish what happened; others react without being imported.

`InProcessBus` serves the embedded default (one asyncio process). With the services run
apart (scale mode) events do not cross processes yet: a bus between processes with this
interface is planned (issue 15).
"""
from __future__ import annotations

import asyncio
import fnmatch
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

log = logging.getLogger(__name__)

Handler = Callable[["BusEvent"], Awaitable[None]]


@dataclass(frozen=True)
class BusEvent:
    topic: str  # dotted, e.g. "case.created", "call.agent_connect"
    data: dict[str, Any] = field(default_factory=dict)


class EventBus(Protocol):
    async def publish(self, topic: str, data: dict[str, Any]) -> None: ...

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        """Call handler for topics matching the glob pattern; returns an unsubscribe function."""
        ...


class InProcessBus:
    """Delivers each event to every matching handler; a failing handler is logged, not fatal."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[str, Handler]] = []

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        entry = (pattern, handler)
        self._subscribers.append(entry)
        return lambda: self._subscribers.remove(entry) if entry in self._subscribers else None

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        handlers = [h for p, h in self._subscribers if fnmatch.fnmatchcase(topic, p)]
        if not handlers:
            return
        event = BusEvent(topic, dict(data))
        if len(handlers) == 1:  # the common case: no gather (a Task and two more loop turns per event)
            try:
                await handlers[0](event)
            except Exception as exc:  # as gather(return_exceptions=True) below: logged, not fatal
                log.error("bus handler %r failed on %s: %r", handlers[0], topic, exc)
            return
        results = await asyncio.gather(*(h(event) for h in handlers), return_exceptions=True)
        for handler, result in zip(handlers, results, strict=True):
            if isinstance(result, BaseException):
                log.error("bus handler %r failed on %s: %r", handler, topic, result)

    def publish_threadsafe(self, loop: asyncio.AbstractEventLoop, topic: str, data: dict[str, Any]) -> None:
        """Publish from a worker thread (sync request handlers) onto the bus's loop."""
        asyncio.run_coroutine_threadsafe(self.publish(topic, data), loop)
