"""Categories and time limits are data, validated on load with file and line."""
from __future__ import annotations

import pytest

from case_bridge.catalogue import CatalogueError, load_catalogue
from case_bridge.deadlines import AMBER_AT, Clock, TimeLimitError, load_time_limits
from hotline.workcalendar import load_calendar
from routing import load_divisions

HEADER = "key,kind,major_code,major_name,minor_code,name,synonyms\n"


def test_shipped_catalogue_has_both_kinds_and_searches_synonyms():
    cat = load_catalogue()
    assert len(cat) == 144
    assert cat.get("E0102").name == "暴露垃圾" and cat.get("C0101").name == "上水井盖"
    assert cat.get("C0101").kind == "部件" and cat.get("E0101").kind == "事件"
    assert cat.search("小区门口有人摆地摊")[0].key == "E0501"
    assert cat.search("路灯坏了好几天")[0].key == "C0118"
    with pytest.raises(CatalogueError, match="unknown category 'X1'"):
        cat.get("X1")


@pytest.mark.parametrize("row, words", [
    ("E01x2,事件,01,市容环境,02,暴露垃圾,\n", ":2: key 'E01x2'"),
    ("E0102,部件,01,市容环境,02,暴露垃圾,\n", ":2: kind '部件' does not match"),
    ("E0102,事件,01,市容环境,03,暴露垃圾,\n", ":2: key E0102 does not match"),
    ("E0102,事件,01,市容环境,02,,\n", ":2: name and major_name"),
])
def test_catalogue_errors_give_file_and_line(tmp_path, row, words):
    f = tmp_path / "c.csv"
    f.write_text(HEADER + row, "utf-8")
    with pytest.raises(CatalogueError, match=words):
        load_catalogue(f)


def test_duplicate_key_is_refused(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text(HEADER + "E0102,事件,01,市容环境,02,暴露垃圾,\n" * 2, "utf-8")
    with pytest.raises(CatalogueError, match=":3: key E0102 appears twice"):
        load_catalogue(f)


def test_time_limits_first_match_wins():
    limits = load_time_limits(load_calendar())
    assert limits.limit_for("E0102", "一般").label == "4 工作时" and limits.limit_for("E0102", "一般").minutes == 240
    assert limits.limit_for("E0102", "特急").basis == "natural"  # 特急 comes first
    assert limits.limit_for("E0507", "一般").minutes == 5 * 480
    assert limits.limit_for("E0402", "一般").label == "4 小时"
    assert limits.limit_for(None, "紧急").minutes == 480


def test_time_limit_table_errors(tmp_path):
    cal = load_calendar()
    f = tmp_path / "t.csv"
    f.write_text("category,urgency,limit,unit\n*,一般,5,周\n", "utf-8")
    with pytest.raises(TimeLimitError, match=":2: unit '周'"):
        load_time_limits(cal, f)
    f.write_text("category,urgency,limit,unit\n*,一般,5,工作日\n", "utf-8")
    with pytest.raises(TimeLimitError, match="no time limit for uncategorised / 紧急"):
        load_time_limits(cal, f)


def test_clock_lights_suspension_and_extension():
    from datetime import datetime, timedelta, timezone
    cal = load_calendar()
    start = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # Monday 09:00 local
    clock = Clock(start, 100, "natural")
    assert clock.light(cal, start + timedelta(minutes=79)) == "green"
    assert clock.light(cal, start + timedelta(minutes=80)) == "amber" and AMBER_AT == 0.8
    assert clock.light(cal, start + timedelta(minutes=101)) == "red"
    paused = clock.suspend(start + timedelta(minutes=50))
    assert paused.used_minutes(cal, start + timedelta(days=3)) == 50  # 挂账 stops the clock
    resumed = paused.resume(cal, start + timedelta(minutes=500))
    assert resumed.used_minutes(cal, start + timedelta(minutes=510)) == 60
    assert resumed.due_at(cal) == start + timedelta(minutes=550)
    assert resumed.extend(40).due_at(cal) == start + timedelta(minutes=590)  # 延期 adds


def test_shenzhen_divisions_load():
    divisions = load_divisions("shenzhen")
    districts = [d for d in divisions if d.level == "district"]
    assert len(districts) == 9 and {d.name for d in districts} >= {"福田区", "南山区", "光明区"}
    assert sum(d.level == "community" for d in divisions) > 700
