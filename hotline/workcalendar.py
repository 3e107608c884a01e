"""The working-time calendar: work days, holidays, daily work periods.

Time limits in 工作时 / 工作日 are measured with it: `add_work_minutes` finds when a
limit runs out, `work_minutes_between` how much of it is used.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

MAX_DAYS = 3660  # a limit that needs more than ten years of calendar is a data error


class CalendarError(ValueError):
    """The calendar file is wrong; the message says where."""


@dataclass(frozen=True)
class WorkCalendar:
    zone: ZoneInfo
    work_weekdays: frozenset[int]
    periods: tuple[tuple[time, time], ...]
    holidays: frozenset[date]
    extra_workdays: frozenset[date]

    @property
    def minutes_per_workday(self) -> int:
        return sum(_minutes(b) - _minutes(a) for a, b in self.periods)

    def is_workday(self, day: date) -> bool:
        if day in self.extra_workdays:
            return True
        return day.isoweekday() in self.work_weekdays and day not in self.holidays

    def _work_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        if not self.is_workday(day):
            return []
        return [
            (datetime.combine(day, a, self.zone), datetime.combine(day, b, self.zone))
            for a, b in self.periods
        ]

    def add_work_minutes(self, start: datetime, minutes: float) -> datetime:
        """The instant at which `minutes` of working time after `start` have passed (UTC)."""
        remaining = timedelta(minutes=minutes)
        day = start.astimezone(self.zone).date()
        for _ in range(MAX_DAYS):
            for a, b in self._work_intervals(day):
                a = max(a, start)
                if a >= b:
                    continue
                if b - a >= remaining:
                    return (a + remaining).astimezone(timezone.utc)
                remaining -= b - a
            day += timedelta(days=1)
        raise CalendarError("time limit runs past the calendar's ten-year horizon: no working days configured?")

    def work_minutes_between(self, start: datetime, end: datetime) -> float:
        """Working minutes in [start, end); 0 if end is not after start."""
        if end <= start:
            return 0.0
        total = timedelta()
        day = start.astimezone(self.zone).date()
        last = end.astimezone(self.zone).date()
        while day <= last:
            for a, b in self._work_intervals(day):
                a, b = max(a, start), min(b, end)
                if b > a:
                    total += b - a
            day += timedelta(days=1)
        return total.total_seconds() / 60


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _parse_period(text: str, where: str) -> tuple[time, time]:
    try:
        a, b = (time.fromisoformat(p.strip()) for p in text.split("-"))
    except ValueError:
        raise CalendarError(f"{where}: work period {text!r} is not HH:MM-HH:MM") from None
    if b <= a:
        raise CalendarError(f"{where}: work period {text!r} ends before it starts")
    return a, b


def _parse_dates(values: list, key: str, where: str) -> frozenset[date]:
    out = set()
    for v in values:
        try:
            out.add(v if isinstance(v, date) else date.fromisoformat(str(v)))
        except ValueError:
            raise CalendarError(f"{where}: {key} entry {v!r} is not a YYYY-MM-DD date") from None
    return frozenset(out)


def load_calendar(path: Path | None = None, zone: str = "Asia/Shanghai") -> WorkCalendar:
    """Load and validate a calendar TOML file (the packaged one by default)."""
    where = str(path) if path else "hotline/data/calendar.toml"
    text = path.read_text("utf-8") if path else resources.files("hotline").joinpath("data/calendar.toml").read_text("utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CalendarError(f"{where}: not valid TOML: {exc}") from None
    weekdays = raw.get("work_weekdays", [1, 2, 3, 4, 5])
    if not all(isinstance(d, int) and 1 <= d <= 7 for d in weekdays):
        raise CalendarError(f"{where}: work_weekdays must be ISO weekday numbers 1–7")
    periods = tuple(sorted(_parse_period(p, where) for p in raw.get("work_periods", [])))
    if not periods:
        raise CalendarError(f"{where}: work_periods is empty")
    for (_, b1), (a2, _) in zip(periods, periods[1:], strict=False):
        if a2 < b1:
            raise CalendarError(f"{where}: work periods overlap")
    unknown = set(raw) - {"work_weekdays", "work_periods", "holidays", "extra_workdays"}
    if unknown:
        raise CalendarError(f"{where}: unknown keys {sorted(unknown)}")
    return WorkCalendar(
        zone=ZoneInfo(zone),
        work_weekdays=frozenset(weekdays),
        periods=periods,
        holidays=_parse_dates(raw.get("holidays", []), "holidays", where),
        extra_workdays=_parse_dates(raw.get("extra_workdays", []), "extra_workdays", where),
    )
