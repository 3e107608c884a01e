"""Kill a real Celery worker in the middle of an effect: the effect still happens exactly once.

A real worker (with beat) runs on the embedded SQLite broker. The district's system
applies the dispatch notice, then holds the request open; the worker is killed with
SIGKILL while waiting for the answer. A new worker reclaims the row after its lease,
sends again with the same Idempotency-Key, and the receiver does not apply it twice.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from case_bridge import CaseCore, HandlingUnit, NewCase, OutboxItem
from tests.support.waiting import wait_for
from tests.support.webhook_receiver import WebhookReceiver


def start_worker(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "case_bridge.worker", "worker", "-B", "--pool", "threads",
         "--concurrency", "2", "--loglevel", "WARNING"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)




@pytest.mark.timeout(180)
def test_worker_killed_mid_effect_does_it_exactly_once(db, settings, people, tmp_path):
    core = CaseCore(settings)  # the real clock: the worker runs in real time
    env = {**os.environ, "HOTLINE_DATABASE_URL": settings.database_url, "HOTLINE_DATA_DIR": str(tmp_path / "w"),
           "HOTLINE_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}", "HOTLINE_OUTBOX_POLL_SECONDS": "0.5",
           "HOTLINE_OUTBOX_LEASE_SECONDS": "5", "HOTLINE_WEBHOOK_TIMEOUT_SECONDS": "60"}
    with WebhookReceiver() as receiver:
        receiver.stall_first = True
        with db.session() as s:
            s.get(HandlingUnit, "440304").webhook_url = receiver.url
        with db.session() as s:
            number = core.create_case(s, NewCase(description="路面塌陷一米见方", category_key="E0401", urgency="紧急",
                                                 district_code="440304", place_confirmed=True),
                                      people["agent1"]).case.number
        first = start_worker(env)
        try:
            assert receiver.received.wait(60), "the first worker never sent the notice"
            os.killpg(first.pid, signal.SIGKILL)  # mid-task: applied by the receiver, never confirmed
            first.wait(10)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
        with db.session() as s:
            row = s.scalar(select(OutboxItem).where(OutboxItem.kind == "webhook"))
            assert row.status == "running"  # leased by the dead worker, not done
        receiver.release.set()
        second = start_worker(env)
        try:
            def done() -> bool:
                with db.session() as s:
                    return s.scalar(select(OutboxItem.status).where(OutboxItem.kind == "webhook")) == "done"
            wait_for(done, 90, "the second worker to finish the effect")
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(30)
    assert len(receiver.deliveries) >= 2 and len(set(receiver.deliveries)) == 1  # re-sent with the same key
    assert len(receiver.applied) == 1  # applied exactly once
    assert next(iter(receiver.applied.values()))["case"]["number"] == number
