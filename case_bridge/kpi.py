"""CJ/T 292 indicators per district, handling unit or category, over a period [start, end).

Counted from the timeline, so a figure can always be traced to the events behind it:
  立案数  filed           cases with a 立案 (file) event in the period
  结案数  closed          cases with a 结案 (close) event in the period
  应结案数 due_to_close   结案数 + cases filed before the end, past their deadline at the end, not closed, not void
  按期结案数 closed_on_time  closed in the period whose last result (反馈) came within the time limit
  结案率 = 结案数 / 应结案数; 按期结案率 = 按期结案数 / 应结案数
  处置数  handled         反馈 (report_result) events in the period
  返工数  reworked        核查不通过 (reject_result) and 重办 (reopen) events in the period
  返工率 = 返工数 / 处置数
  满意率 = (满意 + 基本满意) / 回访 answers in the period
  平均办理时长 avg_handling_hours: mean hours from 立案 to 结案 of the cases closed in the period
Grouping uses the case's current district, unit or category. Rates are None when the
denominator is 0 (no work, not 0 %).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from case_bridge.models import Case, CaseEvent

GROUPS = {"district": Case.district_code, "unit": Case.handling_unit_code, "category": Case.category_key}
LABELS = {"filed": "立案数", "closed": "结案数", "due_to_close": "应结案数", "closed_on_time": "按期结案数",
          "close_rate": "结案率", "on_time_rate": "按期结案率", "handled": "处置数", "reworked": "返工数",
          "rework_rate": "返工率", "surveyed": "回访数", "satisfied": "满意数", "satisfaction_rate": "满意率",
          "avg_handling_hours": "平均办理时长(小时)"}


@dataclass
class KpiRow:
    group: str | None
    filed: int = 0
    closed: int = 0
    due_to_close: int = 0
    closed_on_time: int = 0
    close_rate: float | None = None
    on_time_rate: float | None = None
    handled: int = 0
    reworked: int = 0
    rework_rate: float | None = None
    surveyed: int = 0
    satisfied: int = 0
    satisfaction_rate: float | None = None
    avg_handling_hours: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def kpi_report(session: Session, group_by: str, start: datetime, end: datetime) -> list[KpiRow]:
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    col = GROUPS[group_by]
    rows: dict[str | None, KpiRow] = {}
    row = lambda g: rows.setdefault(g, KpiRow(g))  # noqa: E731
    closed_cases: dict[int, tuple[str | None, datetime]] = {}
    events = session.execute(
        select(CaseEvent.case_id, CaseEvent.action, CaseEvent.at, CaseEvent.data, col)
        .join(Case, Case.id == CaseEvent.case_id)
        .where(CaseEvent.at >= start, CaseEvent.at < end,
               CaseEvent.action.in_(("file", "close", "report_result", "reject_result", "reopen", "record_satisfaction")))
        .order_by(CaseEvent.id)
    ).all()
    for case_id, action, at, data, group in events:
        r = row(group)
        if action == "file":
            r.filed += 1
        elif action == "close":
            r.closed += case_id not in closed_cases  # a case closed twice (after 重办) counts once
            closed_cases[case_id] = (group, at)
        elif action == "report_result":
            r.handled += 1
        elif action in ("reject_result", "reopen"):
            r.reworked += 1
        elif action == "record_satisfaction":
            r.surveyed += 1
            r.satisfied += (data or {}).get("answer") in ("满意", "基本满意")
    # on time: the last 反馈 before each close
    if closed_cases:
        last_result: dict[int, bool] = {}
        for case_id, data, at in session.execute(
                select(CaseEvent.case_id, CaseEvent.data, CaseEvent.at)
                .where(CaseEvent.case_id.in_(closed_cases), CaseEvent.action == "report_result")
                .order_by(CaseEvent.id)):
            if at <= closed_cases[case_id][1]:
                last_result[case_id] = bool((data or {}).get("on_time"))
        hours: dict[str | None, list[float]] = defaultdict(list)
        filed = dict(session.execute(select(Case.id, Case.filed_at).where(Case.id.in_(closed_cases))).all())
        for case_id, (group, at) in closed_cases.items():
            row(group).closed_on_time += last_result.get(case_id, False)
            if filed.get(case_id):
                hours[group].append((at - filed[case_id]).total_seconds() / 3600)
        for group, values in hours.items():
            row(group).avg_handling_hours = round(sum(values) / len(values), 2)
    # overdue and still open at the end of the period
    for group, in session.execute(
            select(col).where(Case.filed_at < end, Case.due_at < end, Case.state != "void",
                              (Case.closed_at.is_(None)) | (Case.closed_at >= end))):
        row(group).due_to_close += 1
    for r in rows.values():
        r.due_to_close += r.closed
        r.close_rate = _rate(r.closed, r.due_to_close)
        r.on_time_rate = _rate(r.closed_on_time, r.due_to_close)
        r.rework_rate = _rate(r.reworked, r.handled)
        r.satisfaction_rate = _rate(r.satisfied, r.surveyed)
    return sorted(rows.values(), key=lambda r: (r.group is None, r.group or ""))
