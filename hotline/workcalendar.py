"""The working-time calendar: work days, holidays, daily work periods.

Time limits in 工作时 / 工作日 are measured with it: `add_work_minutes` finds when a
limit runs out, `work_minutes_between` how much of it is used.

China's public holidays and the swapped working weekends (调休) come from the `holidays`
package (its China calendar carries the State Council's yearly notices as `weekend_workdays`,
and the statutory holidays by rule for the years no notice covers yet). The TOML file sets the
week and the work periods, and adds what a city adds: local holidays (a typhoon closure day),
extra working days, and a national schedule the package does not have yet (`known_years`).
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays as holiday_data

from hotline import clock

MAX_DAYS = 3660  # a limit that needs more than ten years of calendar is a data error
WARN_DAYS = 60   # say so when the known years end this soon


class CalendarError(ValueError):
    """The calendar file is wrong; the message says where."""


def _package_years() -> tuple[int, int]:
    """The years the holidays package computes China's statutory holidays for."""
    return holiday_data.China.start_year, holiday_data.China.end_year


@dataclass(frozen=True)
class WorkCalendar:
    zone: ZoneInfo
    work_weekdays: frozenset[int]
    periods: tuple[tuple[time, time], ...]
    holidays: frozenset[date]          # local additions (the TOML file)
    extra_workdays: frozenset[date]    # local additions (the TOML file)
    national: bool = True              # take China's holidays and 调休 from the holidays package
    local_known_years: frozenset[int] = frozenset()
    _years: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def minutes_per_workday(self) -> int:
        return sum(_minutes(b) - _minutes(a) for a, b in self.periods)

    def _national(self, year: int) -> tuple[frozenset[date], frozenset[date]]:
        """(holidays, weekend working days) of one year from the package; cached."""
        got = self._years.get(year)
        if got is None:
            first, last = _package_years()
            if not self.national or not first <= year <= last:
                got = (frozenset(), frozenset())
            else:
                cn = holiday_data.China(years=year)
                got = (frozenset(cn), frozenset(d for d in cn.weekend_workdays if d.year == year))
            self._years[year] = got
        return got

    def is_workday(self, day: date) -> bool:
        if day in self.extra_workdays:
            return True
        if day in self.holidays:
            return False
        national_off, national_on = self._national(day.year)
        if day in national_on:
            return True
        return day.isoweekday() in self.work_weekdays and day not in national_off

    @property
    def known_through(self) -> int | None:
        """The last year whose national schedule (holidays and 调休) is known: the newest State Council
        notice in the package, or a later year the TOML file declares in `known_years`."""
        years = set(self.local_known_years)
        if self.national:
            for year in range(2020, clock.now().year + 3):
                if self._national(year)[1]:
                    years.add(year)
        return max(years) if years else None

    def warning(self, today: date) -> str | None:
        """Words for a person when the known years end within WARN_DAYS of `today` (or already ended)."""
        last = self.known_through
        if last is None:
            return None
        end = date(last, 12, 31)
        if (end - today).days > WARN_DAYS:
            return None
        when = "已于" if today > end else "将于"
        return (f"工作日历{when} {end.isoformat()} 到期：{last + 1} 年的调休安排尚未收录，期限按周一至周五和法定节假日计算。"
                f"请升级 holidays 包（pip install -U holidays），或在 calendar.toml 中写入 {last + 1} 年的 holidays、"
                f"extra_workdays 并把 {last + 1} 加入 known_years。"
                f" (The working calendar knows the national schedule only through {last}; upgrade the holidays "
                f"package or add {last + 1} to calendar.toml.)")

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
    unknown = set(raw) - {"work_weekdays", "work_periods", "holidays", "extra_workdays", "national_holidays",
                          "known_years"}
    if unknown:
        raise CalendarError(f"{where}: unknown keys {sorted(unknown)}")
    national = raw.get("national_holidays", True)
    if not isinstance(national, bool):
        raise CalendarError(f"{where}: national_holidays must be true or false")
    known = raw.get("known_years", [])
    if not all(isinstance(y, int) and 1950 <= y <= 2100 for y in known):
        raise CalendarError(f"{where}: known_years must be years such as 2027")
    holidays = _parse_dates(raw.get("holidays", []), "holidays", where)
    extra = _parse_dates(raw.get("extra_workdays", []), "extra_workdays", where)
    both = holidays & extra
    if both:
        raise CalendarError(f"{where}: {min(both).isoformat()} is both a holiday and an extra working day")
    return WorkCalendar(zone=ZoneInfo(zone), work_weekdays=frozenset(weekdays), periods=periods,
                        holidays=holidays, extra_workdays=extra, national=national,
                        local_known_years=frozenset(known))
