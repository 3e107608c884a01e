"""Human case numbers in the 数字城管 form: {C|E}{大类}{小类}{yyyyMMdd}{daily sequence}.

C = 部件, E = 事件; cases without a category (a consultation, a suggestion) use Z0000.
The sequence is per prefix and local day, at least 4 digits (more on a very busy day),
taken with one atomic upsert so concurrent creations never share a number.
"""
from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from case_bridge.models import CaseCounter
from hotline.db import conflict_insert

UNCATEGORISED = "Z0000"


def next_in_sequence(session: Session, key: str) -> int:
    """The next number of the named sequence (1, 2, …), taken atomically: concurrent callers never share one."""
    stmt = (
        conflict_insert(session, CaseCounter)
        .values(key=key, value=1)
        .on_conflict_do_update(index_elements=["key"], set_={"value": CaseCounter.value + 1})
        .returning(CaseCounter.value)
    )
    return session.execute(stmt).scalar_one()


def next_case_number(session: Session, category_key: str | None, local_day: date) -> str:
    prefix = category_key or UNCATEGORISED
    day = local_day.strftime("%Y%m%d")
    return f"{prefix}{day}{next_in_sequence(session, f'{prefix}-{day}'):04d}"
