"""The product's one clock: every "now" — case times, deadlines, KPIs, outbox due times, SMS
quiet hours, survey calling hours, call records — comes from `now()`.

The clock is the system's UTC time unless a test (or a replay) installs its own with
`use_clock`, so a test decides what day it is instead of the machine it runs on.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

Clock = Callable[[], datetime]


def system_now() -> datetime:
    return datetime.now(timezone.utc)


_current: Clock = system_now


def now() -> datetime:
    """The current instant, aware, in UTC."""
    return _current()


def set_clock(clock: Clock | None) -> None:
    """Install `clock` for the whole process (None: back to the system clock)."""
    global _current
    _current = clock or system_now


@contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Install `clock` for the duration of a `with` block."""
    previous = _current
    set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(previous)


class ManualClock:
    """A clock that stands still until it is moved: `advance(minutes=5)`, `set(datetime)`."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs an aware datetime")
        self.t = start.astimezone(timezone.utc)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **delta: float) -> datetime:
        self.t += timedelta(**delta)
        return self.t

    def set(self, when: datetime) -> datetime:
        self.t = when.astimezone(timezone.utc)
        return self.t
