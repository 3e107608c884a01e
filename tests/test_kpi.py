"""CJ/T 292 indicators on a small dataset whose figures are worked out by hand below."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from case_bridge import ActionIn, NewCase, kpi_report
from hotline.accounts import SYSTEM

SZ = ZoneInfo("Asia/Shanghai")
WEEK_START = datetime(2026, 11, 23, tzinfo=SZ)  # Monday
WEEK_END = WEEK_START + timedelta(days=7)


def at(clock, day: int, hour: int, minute: int = 0) -> None:
    """Set the clock to 2026-11-{day} hour:minute in Shenzhen."""
    clock.t = datetime(2026, 11, day, hour, minute, tzinfo=SZ)


def test_kpis_by_district_match_the_hand_count(db, core, people, clock):
    agent, disp, futian, nanshan = people["agent1"], people["disp1"], people["futian1"], people["nanshan1"]

    def new(category: str, district: str) -> str:
        with db.session() as s:
            return core.create_case(s, NewCase(description="测试案件", category_key=category, district_code=district,
                                               place_confirmed=True), agent).case.number

    def act(number: str, action: str, actor, **kw) -> None:
        with db.session() as s:
            core.apply_action(s, number, action, actor, ActionIn(**kw))

    # G: last week, filed and closed before the period — counts nowhere
    at(clock, 20, 9)
    g = new("E0102", "440304")
    for step, who, kw in [("accept", futian, {}), ("report_result", futian, {"note": "done"}),
                          ("verify", agent, {}), ("close", disp, {})]:
        act(g, step, who, **kw)

    at(clock, 23, 9)  # Monday 09:00: A, B, D (福田, 暴露垃圾: 4 工作时 → due 14:30), C (福田, 5 工作日), E, F (南山)
    a, b = new("E0102", "440304"), new("E0102", "440304")
    new("E0102", "440304")  # D
    new("E0505", "440304")  # C
    e, f = new("E0505", "440305"), new("E0505", "440305")
    act(f, "void", disp, note="重复")

    at(clock, 23, 10)  # E: 南山 reports within its limit and is closed at 10:00 (1 h after 立案)
    for step, who, kw in [("accept", nanshan, {}), ("report_result", nanshan, {"note": "已劝离"}),
                          ("verify", agent, {}), ("close", disp, {})]:
        act(e, step, who, **kw)
    act(e, "record_satisfaction", SYSTEM, answer="基本满意")

    at(clock, 23, 11)  # A: reported after 2 working hours (on time), closed at 12:00 (3 h after 立案)
    act(a, "accept", futian)
    act(a, "report_result", futian, note="已清运")
    at(clock, 23, 12)
    act(a, "verify", agent)
    act(a, "close", disp)
    act(a, "record_satisfaction", SYSTEM, answer="满意")

    at(clock, 24, 9)  # B: reported Tuesday 09:00 (8 working hours > 4: late), rejected, re-dispatched
    act(b, "accept", futian)
    act(b, "report_result", futian, note="已清运")
    act(b, "reject_result", agent, note="现场仍有垃圾")
    act(b, "dispatch", disp)
    at(clock, 25, 9)  # … reported again Wednesday 09:00 (late again), closed 10:00 (49 h after 立案)
    act(b, "accept", futian)
    act(b, "report_result", futian, note="已彻底清运")
    at(clock, 25, 10)
    act(b, "verify", agent)
    act(b, "close", disp)
    act(b, "record_satisfaction", SYSTEM, answer="不满意")
    # D stays open past its deadline (Mon 14:30); C is due next Monday 09:00, after the period

    with db.session() as s:
        rows = {r.group: r.as_dict() for r in kpi_report(s, "district", WEEK_START, WEEK_END)}

    # 福田: 立案 A B C D = 4; 结案 A B = 2; 应结案 = 2 + D (overdue, open) = 3; 按期结案 = A = 1;
    # 处置 = A + B×2 = 3; 返工 = 1; 回访 2 (满意, 不满意) → 满意率 1/2; 平均办理时长 (3 + 49) / 2 = 26 h
    assert rows["440304"] == dict(group="440304", filed=4, closed=2, due_to_close=3, closed_on_time=1,
                                  close_rate=0.6667, on_time_rate=0.3333, handled=3, reworked=1, rework_rate=0.3333,
                                  surveyed=2, satisfied=1, satisfaction_rate=0.5, avg_handling_hours=26.0)
    # 南山: 立案 E F = 2; 结案 E = 1; 应结案 1; 按期 1; 处置 1; 返工 0; 回访 1 (基本满意) → 1.0; 1 h
    assert rows["440305"] == dict(group="440305", filed=2, closed=1, due_to_close=1, closed_on_time=1,
                                  close_rate=1.0, on_time_rate=1.0, handled=1, reworked=0, rework_rate=0.0,
                                  surveyed=1, satisfied=1, satisfaction_rate=1.0, avg_handling_hours=1.0)
    assert set(rows) == {"440304", "440305"}

    with db.session() as s:
        by_category = {r.group: r for r in kpi_report(s, "category", WEEK_START, WEEK_END)}
        by_unit = {r.group: r for r in kpi_report(s, "unit", WEEK_START, WEEK_END)}
        last_week = kpi_report(s, "district", WEEK_START - timedelta(days=7), WEEK_START)
    assert (by_category["E0102"].filed, by_category["E0505"].filed) == (3, 3)
    assert by_unit["440304"].closed == 2
    assert [(r.group, r.filed, r.closed, r.closed_on_time) for r in last_week] == [("440304", 1, 1, 1)]
