"""The outbox: every outside effect is a row first, then work for a Celery task.

`enqueue` is called inside the transaction that causes the effect. `claim_due` (run by
beat) leases due rows atomically — FOR UPDATE SKIP LOCKED on PostgreSQL, the write lock
on SQLite. `perform` starts the effect only if its claim is still the row's and still
leased (one UPDATE: a task that waited in the queue past its lease, or whose row was
claimed again meanwhile, is 'stale' and does nothing); that start counts the attempt and
leases the row afresh, and a heartbeat thread renews the lease every lease/3 s while the
effect runs, so a live effect — a callback ringing for a minute — is never claimed twice.
The row is marked done only after the effect reports success; a failure backs off; a
lease that expires (a worker killed mid-task, its heartbeat gone) makes the row claimable
again. Effects receive the row's idempotency key so that a retry after a crash is
recognised by the receiving side.

Why Celery stays: the design fixes it (every outside effect is a row, then a Celery task),
and it gives the deployment its worker pool, beat schedule and broker-backed scaling. But
correctness does not rest on it: the lease lives in the row and is checked and renewed by
`perform`, so a redelivered, late or duplicated task is harmless. That is also why the
SMS service can work its rows with its own claim loop (`sms.service`) on the same code.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from case_bridge.models import CaseEvent, OutboxItem
from hotline.db import Database, conflict_insert, utcnow

log = logging.getLogger(__name__)

# back-off after the n-th failed attempt: 30 s, 2 min, 5 min, 30 min, then hourly
BACKOFF = (30, 120, 300, 1800, 3600)
HEARTBEAT_TICK = 0.2   # seconds between looks at the clock while an effect runs


class EffectError(Exception):
    """The effect did not happen; it will be retried."""


class PermanentEffectError(EffectError):
    """The effect can never happen (bad address, refused); it is not retried."""


Effect = Callable[[dict[str, Any], str], dict[str, Any] | None]
_effects: dict[str, Effect] = {}


def register_effect(kind: str) -> Callable[[Effect], Effect]:
    """Register the function that performs outbox rows of this kind (a plug-in point)."""
    def deco(fn: Effect) -> Effect:
        _effects[kind] = fn
        return fn
    return deco


def registered_kinds() -> list[str]:
    return sorted(_effects)


def enqueue(session: Session, kind: str, payload: dict[str, Any], key: str,
            case_id: int | None = None, due_at: datetime | None = None) -> None:
    """Add an effect; a second enqueue with the same key is ignored (the effect is one thing)."""
    due = due_at or utcnow()
    session.execute(
        conflict_insert(session, OutboxItem)
        .values(kind=kind, payload=payload, idempotency_key=key, case_id=case_id, due_at=due,
                available_at=due, status="pending", attempts=0, last_error="", result={}, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )


@dataclass(frozen=True)
class Claim:
    item_id: int
    token: str
    lease_seconds: int = 120  # what claim_due leased with (the settings' default when rebuilt from a task)


def claim_due(session: Session, lease_seconds: int, limit: int, kinds: list[str] | None = None,
              now: datetime | None = None) -> list[Claim]:
    """Lease up to `limit` due rows of the registered kinds. The lease only reserves the row until its
    `perform` begins; attempts are counted there, when the effect actually starts."""
    now = now or utcnow()
    kinds = registered_kinds() if kinds is None else kinds
    if not kinds:
        return []
    due = or_(and_(OutboxItem.status == "pending", OutboxItem.available_at <= now),
              and_(OutboxItem.status == "running", OutboxItem.lease_until < now))
    ids = session.scalars(
        select(OutboxItem.id).where(due, OutboxItem.kind.in_(kinds))
        .order_by(OutboxItem.available_at).limit(limit).with_for_update(skip_locked=True)
    ).all()
    if not ids:
        return []
    claims = [Claim(item_id, secrets.token_hex(8), lease_seconds) for item_id in ids]
    table = OutboxItem.__table__   # one executemany: each row gets its own claim token
    session.execute(
        update(table).where(table.c.id == bindparam("b_id"))
        .values(status="running", claim_token=bindparam("b_token"),
                lease_until=now + timedelta(seconds=lease_seconds)),
        [{"b_id": c.item_id, "b_token": c.token} for c in claims])
    return claims


# perform's statements, built once (the hot path of every effect): Core on the table, no ORM session
_T = OutboxItem.__table__
_UNTIL = bindparam("b_until", type_=_T.c.lease_until.type)
_OURS = (_T.c.id == bindparam("b_id"), _T.c.claim_token == bindparam("b_token"), _T.c.status == "running")
_START = (update(_T).where(*_OURS, _T.c.lease_until >= bindparam("b_now", type_=_T.c.lease_until.type))
          .values(attempts=_T.c.attempts + 1, lease_until=_UNTIL))
_RENEW = update(_T).where(*_OURS).values(lease_until=_UNTIL)
_READ = select(_T.c.kind, _T.c.payload, _T.c.idempotency_key, _T.c.attempts, _T.c.case_id).where(
    _T.c.id == bindparam("b_id"))
_DONE = (update(_T).where(_T.c.id == bindparam("b_id"), _T.c.claim_token == bindparam("b_token"))
         .values(status="done", done_at=bindparam("b_now", type_=_T.c.done_at.type),
                 result=bindparam("b_result", type_=_T.c.result.type), lease_until=None, last_error=""))


def perform(db: Database, claim: Claim, max_attempts: int) -> str:
    """Run one claimed effect; returns the row's new status (or 'stale' if the claim was lost)."""
    now = utcnow()
    with db.engine.begin() as conn:
        started = conn.execute(_START, {"b_id": claim.item_id, "b_token": claim.token, "b_now": now,
                                        "b_until": now + timedelta(seconds=claim.lease_seconds)}).rowcount
        item = conn.execute(_READ, {"b_id": claim.item_id}).first() if started else None
    if item is None:
        return "stale"
    kind, payload, key, attempts, case_id = item.kind, dict(item.payload), item.idempotency_key, item.attempts, \
        item.case_id
    effect = _effects.get(kind)
    try:
        if effect is None:
            raise EffectError(f"no effect registered for kind {kind!r} in this worker")
        with _heartbeat_while_running(db, claim):
            result = effect(payload, key) or {}
    except Exception as exc:  # the effect's failure is data; the worker goes on
        permanent = isinstance(exc, PermanentEffectError) or attempts >= max_attempts
        return _record_failure(db, claim, case_id, kind, f"{type(exc).__name__}: {exc}", permanent, attempts)
    with db.engine.begin() as conn:
        done = conn.execute(_DONE, {"b_id": claim.item_id, "b_token": claim.token, "b_now": utcnow(),
                                    "b_result": result}).rowcount
    return "done" if done else "stale"


def heartbeat(db: Database, claim: Claim) -> bool:
    """Extend the claim's lease by its length from now; False when the row is no longer this claim's."""
    with db.engine.begin() as conn:
        return conn.execute(_RENEW, {"b_id": claim.item_id, "b_token": claim.token,
                                     "b_until": utcnow() + timedelta(seconds=claim.lease_seconds)}).rowcount == 1


@contextmanager
def _heartbeat_while_running(db: Database, claim: Claim) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        # polled with short sleeps rather than stop.wait(timeout): as cheap, and it still beats where
        # a timed condition wait never wakes (libfaketime, which the CI's other-year runs use)
        interval = claim.lease_seconds / 3
        due = time.monotonic() + interval
        while not stop.is_set():
            time.sleep(min(HEARTBEAT_TICK, interval))
            if stop.is_set() or time.monotonic() < due:
                continue
            due = time.monotonic() + interval
            try:
                if not heartbeat(db, claim):
                    if not stop.is_set():   # (after the effect ended, the row is simply done)
                        log.warning("outbox #%s lost its lease while the effect ran", claim.item_id,
                                    extra={"outbox_id": claim.item_id})
                    return
            except Exception:  # the database is briefly away: the lease still has two thirds to run
                log.warning("outbox #%s: lease not renewed", claim.item_id, exc_info=True,
                            extra={"outbox_id": claim.item_id})

    thread = threading.Thread(target=beat, name=f"outbox-lease-{claim.item_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()   # not joined: the effect's outcome is written at once, the beat ends within a tick


def _record_failure(db: Database, claim: Claim, case_id: int | None, kind: str, error: str,
                    permanent: bool, attempts: int) -> str:
    now = utcnow()
    status = "failed" if permanent else "pending"
    delay = BACKOFF[min(attempts - 1, len(BACKOFF) - 1)]
    log.warning("outbox %s #%s attempt %s failed (%s): %s", kind, claim.item_id, attempts, status, error,
                extra={"outbox_id": claim.item_id})
    with db.session() as s:
        changed = s.execute(
            update(OutboxItem).where(OutboxItem.id == claim.item_id, OutboxItem.claim_token == claim.token)
            .values(status=status, last_error=error[:2000], lease_until=None,
                    available_at=now + timedelta(seconds=delay))
        ).rowcount
        if changed and permanent and case_id is not None:
            s.add(CaseEvent(case_id=case_id, actor="system", actor_role="system", action="effect_failed",
                            note=f"{kind} 发送失败（已尝试 {attempts} 次）: {error[:300]}",
                            data={"outbox_id": claim.item_id, "kind": kind}))
    return status if changed else "stale"
