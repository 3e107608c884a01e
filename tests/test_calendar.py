"""The working calendar after 2026: China's holidays and 调休 from the holidays package, the TOML file
as the city's additions, and a warning a person can act on when the known years run out."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import holidays
import pytest

from case_bridge import CaseCore, NewCase
from hotline.clock import ManualClock, use_clock
from hotline.workcalendar import CalendarError, load_calendar

SZ = ZoneInfo("Asia/Shanghai")


def local(*args) -> datetime:
    return datetime(*args, tzinfo=SZ)


def test_a_case_filed_before_the_2027_spring_festival_gets_a_deadline_that_skips_it(settings, db, people):
    festival = sorted(d for d, name in holidays.China(years=2027).items() if d.month == 2)
    assert festival[0] == date(2027, 2, 5) and date(2027, 2, 10) in festival   # as the package lists it
    filed = local(2027, 2, 3, 9, 0)               # Wednesday, 09:00
    with use_clock(ManualClock(filed)):
        core = CaseCore(settings)
        with db.session() as s:
            case = core.create_case(s, NewCase(description="路边垃圾堆了好几天", category_key="E0507",
                                               address_text="福田区华强北路", caller_phone="13800138000"),
                                    people["agent1"]).case
    assert case.limit_label == "5 工作日" and case.state == "dispatched"
    # 2/3 7.5 h, 2/4 8 h, 2/5–2/10 the festival, 2/11, 2/12 and 2/15 8 h each: 0.5 h left for Tuesday 2/16
    assert case.due_at == local(2027, 2, 16, 9, 0).astimezone(timezone.utc)
    weekdays_only = load_calendar(_toml(settings.data_dir, "national_holidays = false\n"))
    assert weekdays_only.add_work_minutes(filed, 5 * 480) == local(2027, 2, 10, 9, 0).astimezone(timezone.utc)


def _toml(folder, extra: str):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "calendar.toml"
    path.write_text('work_periods = ["08:30-12:00", "13:30-18:00"]\n' + extra, "utf-8")
    return path


def test_the_swapped_working_weekends_come_from_the_package():
    cal = load_calendar()
    swapped = holidays.China(years=2026).weekend_workdays
    assert date(2026, 2, 14) in swapped and cal.is_workday(date(2026, 2, 14))     # Saturday, 调休上班
    assert not cal.is_workday(date(2026, 2, 20))                                   # Friday, the festival
    assert not cal.is_workday(date(2026, 10, 1)) and cal.is_workday(date(2026, 10, 10))


def test_the_city_adds_a_closure_day_and_a_working_day(tmp_path):
    cal = load_calendar(_toml(tmp_path, 'holidays = ["2027-08-02"]\nextra_workdays = ["2027-02-20"]\n'))
    assert not cal.is_workday(date(2027, 8, 2))        # a Monday closed for a typhoon
    assert cal.is_workday(date(2027, 2, 20))           # a Saturday the city works
    assert cal.is_workday(date(2027, 8, 3))


def test_past_the_package_years_a_day_is_a_monday_to_friday_working_day():
    cal = load_calendar()
    last = holidays.China.end_year
    monday = date(last + 1, 1, 1) + timedelta(days=(7 - date(last + 1, 1, 1).weekday()) % 7)
    assert cal.is_workday(monday) and not cal.is_workday(monday + timedelta(days=5))
    assert cal.add_work_minutes(datetime.combine(monday, datetime.min.time(), SZ), 480) is not None


def test_the_warning_comes_sixty_days_before_the_known_years_end(tmp_path):
    cal = load_calendar()
    last = cal.known_through
    assert last is not None and last >= 2026
    assert cal.warning(date(last, 10, 1)) is None
    soon = cal.warning(date(last, 11, 15))
    assert soon and f"{last + 1}" in soon and "calendar.toml" in soon and "holidays" in soon
    assert "已于" in cal.warning(date(last + 1, 3, 1))
    told = load_calendar(_toml(tmp_path, f"known_years = [{last + 1}]\n"))
    assert told.known_through == last + 1 and told.warning(date(last, 11, 15)) is None


@pytest.mark.parametrize("text, words", [
    ('holidays = ["2027-02-20"]\nextra_workdays = ["2027-02-20"]\n', "both a holiday and an extra working day"),
    ('known_years = ["next"]\n', "known_years"),
    ("national_holidays = 1\n", "national_holidays"),
    ("typhoon = true\n", "unknown keys"),
])
def test_bad_calendar_additions_are_refused_with_the_reason(tmp_path, text, words):
    with pytest.raises(CalendarError, match=words):
        load_calendar(_toml(tmp_path, text))
