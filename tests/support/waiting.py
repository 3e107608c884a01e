"""Waiting in tests: on the row or the event, never on a short sleep. The bounds are generous so a
machine busy with other work does not fail a test; a test that passes returns as soon as it can."""
from __future__ import annotations

import asyncio
import time
from typing import Callable

PATIENCE = 60.0   # seconds; only a broken test ever waits this long


async def until(predicate: Callable[[], object], timeout: float = PATIENCE, what: str = "condition") -> None:
    """Wait inside an event loop until `predicate()` is truthy."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


def wait_for(predicate: Callable[[], object], timeout: float = PATIENCE, what: str = "condition") -> None:
    """Wait in a plain thread until `predicate()` is truthy."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
