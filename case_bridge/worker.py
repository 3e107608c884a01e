"""Celery: the app, the beat schedule, and the tasks that work the outbox.

beat → `outbox.dispatch` every few seconds: claims due rows and sends one `outbox.perform`
task per row, expiring with the claim's lease (a late task would be 'stale' anyway: the row's
lease, checked in `outbox.perform`, is what keeps an effect from running twice). Effects
hours away wait as rows (available_at), never as Celery ETAs.
beat → `cases.urge_overdue`: an overdue case is urged once per deadline (outbox again).
"""
from __future__ import annotations

import importlib
import logging
from functools import lru_cache

from celery import Celery, signals
from sqlalchemy import select

from case_bridge import outbox
from case_bridge.models import Case
from case_bridge.schemas import ActionIn
from case_bridge.service import CaseCore
from hotline.accounts import SYSTEM
from hotline.db import Database, utcnow
from hotline.settings import get_settings

log = logging.getLogger(__name__)


def make_celery() -> Celery:
    s = get_settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("hotline", broker=s.broker_url)
    app.conf.update(
        task_acks_late=True,               # a task killed mid-way is redelivered …
        task_reject_on_worker_lost=True,   # … and the row's lease protects against doing it twice
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        timezone="UTC",
        beat_schedule={
            "outbox-dispatch": {"task": "outbox.dispatch", "schedule": s.outbox_poll_seconds},
            "urge-overdue": {"task": "cases.urge_overdue", "schedule": s.overdue_scan_seconds},
        },
        beat_schedule_filename=str(s.data_dir / "celerybeat-schedule"),
    )
    return app


app = make_celery()


@signals.setup_logging.connect
def _logging(**_kw) -> None:
    """The worker logs like the rest of the product (level, text or JSON); beat's ticks are DEBUG."""
    from hotline.logs import configure_logging
    s = get_settings()
    configure_logging(s.log_level, s.log_format)


@lru_cache(maxsize=1)
def _db() -> Database:
    for name in get_settings().effect_plugins:
        importlib.import_module(name)  # plug-ins register their effects on import
    return Database(get_settings().database_url)


@lru_cache(maxsize=1)
def _core() -> CaseCore:
    return CaseCore(get_settings())


@app.task(name="outbox.dispatch")
def dispatch() -> int:
    s = get_settings()
    db = _db()
    with db.session() as session:
        claims = outbox.claim_due(session, s.outbox_lease_seconds, s.outbox_batch_size)
    for claim in claims:
        perform.apply_async((claim.item_id, claim.token), expires=s.outbox_lease_seconds)
    return len(claims)


@app.task(name="outbox.perform")
def perform(item_id: int, token: str) -> str:
    s = get_settings()
    return outbox.perform(_db(), outbox.Claim(item_id, token, s.outbox_lease_seconds), s.outbox_max_attempts)


@app.task(name="cases.urge_overdue")
def urge_overdue() -> int:
    """Urge each case once when it passes its deadline (a new deadline allows a new urge)."""
    db, core = _db(), _core()
    with db.session() as session:
        numbers = session.scalars(select(Case.number).where(
            Case.state.in_(("dispatched", "in_progress")), Case.due_at < utcnow(),
            Case.suspended_since.is_(None), Case.urged_count == 0).limit(500)).all()
    for number in numbers:
        with db.session() as session:
            case = core.lock_case(session, number)
            if case.urged_count == 0 and case.state in ("dispatched", "in_progress"):
                core.apply_action(session, case, "urge", SYSTEM, ActionIn(note="超期自动催办"))
    return len(numbers)

