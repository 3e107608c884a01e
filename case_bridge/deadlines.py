"""Time limits (data: category × urgency → limit) and the deadline clock.

A limit is counted in working time (工作时/工作日, from the calendar) or in natural
time (小时/自然日). 延期 adds to the limit; 挂账 stops the clock. A case is amber from
80 % of its limit and red past 100 %.
"""
from __future__ import annotations

import csv
import fnmatch
import io
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

from hotline.workcalendar import WorkCalendar

AMBER_AT = 0.8
URGENCIES = ("一般", "紧急", "特急")
UNITS = {"工作时": ("work", 60), "工作日": ("work", None), "小时": ("natural", 60), "自然日": ("natural", 1440)}


class TimeLimitError(ValueError):
    """The time-limit table is wrong; the message says where."""


@dataclass(frozen=True)
class TimeLimit:
    minutes: int
    basis: str  # "work" | "natural"
    label: str  # "5 工作日"


@dataclass(frozen=True)
class _Rule:
    category: str
    urgency: str
    limit: TimeLimit


class TimeLimits:
    """First matching rule wins; the table must end in catch-alls for every urgency."""

    def __init__(self, rules: list[_Rule]) -> None:
        self.rules = rules

    def limit_for(self, category_key: str | None, urgency: str) -> TimeLimit:
        key = category_key or ""
        for rule in self.rules:
            if rule.urgency in ("*", urgency) and fnmatch.fnmatchcase(key, rule.category):
                return rule.limit
        raise TimeLimitError(f"no time limit for {key or 'uncategorised'} / {urgency}")


def load_time_limits(calendar: WorkCalendar, path: Path | None = None) -> TimeLimits:
    where = str(path) if path else "case_bridge/data/time_limits.csv"
    text = path.read_text("utf-8") if path else resources.files("case_bridge").joinpath("data/time_limits.csv").read_text("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or {"category", "urgency", "limit", "unit"} - set(reader.fieldnames):
        raise TimeLimitError(f"{where}: header must have category, urgency, limit, unit")
    rules = []
    for line, row in enumerate(reader, start=2):
        urgency = row["urgency"].strip()
        if urgency != "*" and urgency not in URGENCIES:
            raise TimeLimitError(f"{where}:{line}: urgency {urgency!r} is not one of {URGENCIES} or *")
        unit = row["unit"].strip()
        if unit not in UNITS:
            raise TimeLimitError(f"{where}:{line}: unit {unit!r} is not one of {list(UNITS)}")
        try:
            amount = float(row["limit"])
        except ValueError:
            raise TimeLimitError(f"{where}:{line}: limit {row['limit']!r} is not a number") from None
        if amount <= 0:
            raise TimeLimitError(f"{where}:{line}: limit must be positive")
        basis, per = UNITS[unit]
        per = per or calendar.minutes_per_workday
        rules.append(_Rule(row["category"].strip() or "*", urgency,
                           TimeLimit(round(amount * per), basis, f"{row['limit'].strip()} {unit}")))
    table = TimeLimits(rules)
    for u in URGENCIES:  # fail at load, not on the first case of an unlisted kind
        table.limit_for(None, u)
    return table


@dataclass(frozen=True)
class Clock:
    """The deadline state a case carries; pure values so it is easy to test."""

    started_at: datetime
    limit_minutes: int
    basis: str
    extension_minutes: int = 0
    suspended_minutes: float = 0.0
    suspended_since: datetime | None = None

    def _measure(self, cal: WorkCalendar, a: datetime, b: datetime) -> float:
        if self.basis == "work":
            return cal.work_minutes_between(a, b)
        return max(0.0, (b - a).total_seconds() / 60)

    def _add(self, cal: WorkCalendar, a: datetime, minutes: float) -> datetime:
        if self.basis == "work":
            return cal.add_work_minutes(a, minutes)
        return a + timedelta(minutes=minutes)

    @property
    def total_minutes(self) -> int:
        return self.limit_minutes + self.extension_minutes

    def used_minutes(self, cal: WorkCalendar, now: datetime) -> float:
        end = self.suspended_since or now
        return max(0.0, self._measure(cal, self.started_at, end) - self.suspended_minutes)

    def due_at(self, cal: WorkCalendar) -> datetime:
        """When the limit runs out if the clock keeps running from now on."""
        return self._add(cal, self.started_at, self.total_minutes + self.suspended_minutes)

    def fraction(self, cal: WorkCalendar, now: datetime) -> float:
        return self.used_minutes(cal, now) / self.total_minutes

    def light(self, cal: WorkCalendar, now: datetime) -> str:
        f = self.fraction(cal, now)
        return "red" if f > 1 else "amber" if f >= AMBER_AT else "green"

    def suspend(self, now: datetime) -> "Clock":
        return self if self.suspended_since else replace(self, suspended_since=now)

    def resume(self, cal: WorkCalendar, now: datetime) -> "Clock":
        if not self.suspended_since:
            return self
        paused = self._measure(cal, self.suspended_since, now)
        return replace(self, suspended_since=None, suspended_minutes=self.suspended_minutes + paused)

    def extend(self, minutes: int) -> "Clock":
        return replace(self, extension_minutes=self.extension_minutes + minutes)

