"""Cases for telephony tests: reported by a caller, and taken through the workflow to closure."""
from __future__ import annotations

from sqlalchemy import select

from case_bridge import ActionIn, Case, NewCase

CALLER = "13800138000"


def new_case(db, core, caller: str = CALLER, **kw) -> str:
    with db.session() as s:
        return core.create_case(s, NewCase(description="井盖缺失", caller_phone=caller, category_key="C0102",
                                           address_text="福田区华强北路", **kw)).case.number


def closed_case(db, core, people, caller: str = CALLER) -> str:
    """A case of 福田区 (unit 440304, user futian1) dispatched, worked, verified and closed."""
    number = new_case(db, core, caller=caller)
    steps = [("dispatch", "disp1"), ("accept", "futian1"), ("report_result", "futian1"), ("verify", "disp1"),
             ("close", "disp1")]
    with db.session() as s:
        case = s.scalar(select(Case).where(Case.number == number))
        for action, who in steps:
            if action != "dispatch" or case.state == "filed":
                core.apply_action(s, case, action, people[who], ActionIn(note="ok"))
        assert case.state == "closed"
    return number


def callback_key(db, number: str, attempt: int = 1) -> str:
    """The single-use key of a satisfaction callback placed for the case (as the survey effect mints it)."""
    from ivr import survey_keys
    with db.session() as s:
        case_id = s.scalar(select(Case.id).where(Case.number == number))
        return survey_keys.issue(s, case_id, f"survey:{case_id}:test", attempt, "test callback")
