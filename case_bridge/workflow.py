"""The case workflow as an explicit state machine: which action, from which states, by whom.

Pure data and one check function; `service.apply_action` performs the change and writes
the timeline. District users may act only on cases handled by their own unit.
"""
from __future__ import annotations

from dataclasses import dataclass

STATES = {
    "intake": "受理", "filed": "立案", "dispatched": "派遣", "in_progress": "处置中",
    "reported": "已反馈", "verified": "核查", "closed": "结案", "surveyed": "回访",
    "returned": "回退", "suspended": "挂账", "void": "作废", "reopened": "重办",
}
OPEN_STATES = frozenset({"intake", "filed", "dispatched", "in_progress", "reported", "verified",
                         "returned", "suspended", "reopened"})
FINISHED_STATES = frozenset({"closed", "surveyed", "void"})


class WorkflowError(ValueError):
    """An action that is not allowed now, or not for this person."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Transition:
    action: str
    label: str
    sources: frozenset[str]
    target: str | None          # None: stays in its state (延期, 催办, 回访 answers)
    roles: frozenset[str]
    needs_note: bool = False


def _t(action, label, sources, target, roles, needs_note=False) -> Transition:
    return Transition(action, label, frozenset(sources.split()), target, frozenset(roles.split()), needs_note)


TRANSITIONS = {t.action: t for t in [
    _t("file", "立案", "intake", "filed", "agent dispatcher supervisor system"),
    _t("answer", "当场答复", "intake", "closed", "agent supervisor", needs_note=True),
    _t("dispatch", "派遣", "filed returned reopened", "dispatched", "dispatcher supervisor system"),
    _t("accept", "签收", "dispatched", "in_progress", "district"),
    _t("return", "回退", "dispatched in_progress", "returned", "district", needs_note=True),
    _t("report_result", "反馈", "in_progress", "reported", "district", needs_note=True),
    _t("verify", "核查通过", "reported", "verified", "agent dispatcher supervisor"),
    _t("reject_result", "核查不通过", "reported verified", "reopened", "agent dispatcher supervisor", needs_note=True),
    _t("close", "结案", "verified", "closed", "dispatcher supervisor"),
    _t("record_satisfaction", "回访", "closed", "surveyed", "agent supervisor system"),
    _t("reopen", "重办", "closed surveyed", "reopened", "dispatcher supervisor", needs_note=True),
    _t("request_extension", "申请延期", "dispatched in_progress", None, "district", needs_note=True),
    _t("approve_extension", "批准延期", "dispatched in_progress suspended", None, "dispatcher supervisor"),
    _t("reject_extension", "驳回延期", "dispatched in_progress suspended", None, "dispatcher supervisor", needs_note=True),
    _t("suspend", "挂账", "dispatched in_progress", "suspended", "dispatcher supervisor", needs_note=True),
    _t("resume", "挂账恢复", "suspended", "in_progress", "dispatcher supervisor"),
    _t("void", "作废", "intake filed returned dispatched reopened", "void", "dispatcher supervisor", needs_note=True),
    _t("relocate", "改定位/分类", "intake filed returned reopened", None, "agent dispatcher supervisor"),
    _t("urge", "催办", "dispatched in_progress", None, "dispatcher supervisor system"),
]}

SATISFACTION = ("满意", "基本满意", "不满意")


def check(action: str, state: str, role: str, *, own_unit: bool = True, note: str = "") -> Transition:
    """Return the transition, or raise WorkflowError saying why it is not allowed."""
    t = TRANSITIONS.get(action)
    if t is None:
        raise WorkflowError(f"unknown action {action!r}; valid actions: {', '.join(TRANSITIONS)}", status=422)
    if role not in t.roles:
        raise WorkflowError(f"role {role!r} may not {t.label} ({action}); allowed: {', '.join(sorted(t.roles))}", status=403)
    if role == "district" and not own_unit:
        raise WorkflowError("this case is not handled by your unit", status=403)
    if state not in t.sources:
        allowed = "、".join(STATES[s] for s in sorted(t.sources))
        raise WorkflowError(f"cannot {t.label} ({action}) a case in state {STATES.get(state, state)} ({state}); "
                            f"only from {allowed}")
    if t.needs_note and not note.strip():
        raise WorkflowError(f"{t.label} ({action}) needs a note saying why", status=422)
    return t


def allowed_actions(state: str, role: str, own_unit: bool = True) -> list[str]:
    return [a for a, t in TRANSITIONS.items()
            if state in t.sources and role in t.roles and (role != "district" or own_unit)]
