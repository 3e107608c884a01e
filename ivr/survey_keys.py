"""The single-use key that makes a satisfaction answer believable.

The FastAGI port can be reached by anything on the network, and the survey flow is told
which case it is about by a channel variable. So an answer counts only when the call also
carries the key of a callback we placed: a random token minted just before dialling, whose
SHA-256 is written on the case's timeline with the "dialling" mark (the token itself is
never stored). The survey flow `redeem`s it when the citizen picks up: it must match the
latest callback of a closed, not yet surveyed case, be younger than KEY_LIFETIME, and not
have been redeemed before.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from case_bridge import Case, CaseEvent
from hotline.db import utcnow

KEY_LIFETIME = timedelta(hours=1)   # a callback rings for seconds; an hour covers a slow answer and clock skew
DIALLING, REACHED = "survey_call", "survey_reached"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def issue(session: Session, case_id: int, outbox_key: str, attempt: int, note: str) -> str:
    """Write the "dialling" mark of one callback attempt and return its new key (for the Originate)."""
    token = secrets.token_urlsafe(18)
    session.add(CaseEvent(case_id=case_id, actor="system", actor_role="system", action=DIALLING, note=note,
                          data={"key": outbox_key, "attempt": attempt, "outcome": "dialling",
                                "key_sha256": digest(token)}))
    return token


def redeem(session: Session, number: str, token: str, uniqueid: str) -> Case | None:
    """The case this callback key is good for, marking the key used; None if it is not good."""
    if not number or not token:
        return None
    case = session.scalar(select(Case).where(Case.number == number).with_for_update())
    if case is None or case.state != "closed" or case.satisfaction:
        return None
    marks = list(session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id,
                                                         CaseEvent.action.in_((DIALLING, REACHED)))
                                 .order_by(CaseEvent.id)))
    dialled = [m for m in marks if m.action == DIALLING and m.data.get("outcome") == "dialling"]
    wanted = digest(token)
    if not dialled or not hmac.compare_digest(str(dialled[-1].data.get("key_sha256", "")), wanted):
        return None   # not our latest callback for this case (an old key, another case's, or made up)
    if utcnow() - dialled[-1].at > KEY_LIFETIME:
        return None
    if any(m.action == REACHED and m.data.get("key_sha256") == wanted for m in marks):
        return None   # the key was used already: one callback, one answer
    session.add(CaseEvent(case_id=case.id, actor="system", actor_role="system", action=REACHED,
                          note=f"回访电话接通（通话 {uniqueid}）", data={"key_sha256": wanted, "uniqueid": uniqueid}))
    return case
