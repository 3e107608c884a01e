"""Sign-in throttling from the sign-in record: after each wrong password the answer waits longer,
and after `signin_max_failures` in a row an account is locked for `signin_lock_minutes`; one
client address that fails on many accounts is locked the same way. Counting from the table (not
from memory) keeps the lock across restarts and across web processes."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agent_ui.models import SignInEvent
from hotline.settings import Settings

MAX_DELAY_SECONDS = 8.0


@dataclass(frozen=True)
class Verdict:
    locked_until: datetime | None   # set: refuse without looking at the password
    failures: int                   # failures in a row on this account so far


def _failures_since_ok(session: Session, column, value: str, since: datetime) -> tuple[int, datetime | None]:
    last_ok = session.scalar(select(func.max(SignInEvent.at)).where(column == value, SignInEvent.outcome == "ok"))
    start = max(since, last_ok) if last_ok else since
    row = session.execute(select(func.count(), func.max(SignInEvent.at))
                          .where(column == value, SignInEvent.outcome == "failed", SignInEvent.at > start)).one()
    return row[0], row[1]


def check(session: Session, settings: Settings, username: str, client_addr: str, now: datetime) -> Verdict:
    window = timedelta(minutes=settings.signin_lock_minutes)
    since = now - window
    failures, last = _failures_since_ok(session, SignInEvent.username, username, since)
    if failures >= settings.signin_max_failures and last is not None:
        return Verdict(last + window, failures)
    by_client, last_client = _failures_since_ok(session, SignInEvent.client_addr, client_addr, since)
    if by_client >= settings.signin_client_max_failures and last_client is not None:
        return Verdict(last_client + window, failures)
    return Verdict(None, failures)


def delay_after(settings: Settings, failures: int) -> float:
    """How long the answer to the n-th failure in a row waits (0.5 s, 1 s, 2 s … at most 8 s)."""
    if failures <= 1 or settings.signin_delay_seconds <= 0:
        return 0.0
    return min(MAX_DELAY_SECONDS, settings.signin_delay_seconds * 2 ** (failures - 2))
