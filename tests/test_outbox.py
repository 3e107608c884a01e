"""The outbox on SQLite and PostgreSQL: rows first, claimed atomically, done only when confirmed."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from case_bridge import ActionIn, CaseEvent, HandlingUnit, NewCase, OutboxItem, PermanentEffectError
from case_bridge.outbox import BACKOFF, EffectError, claim_due, enqueue, perform, register_effect
from hotline.db import utcnow
from tests.support.threads import run_concurrently
from tests.support.waiting import PATIENCE, wait_for
from tests.support.webhook_receiver import WebhookReceiver

calls: list[tuple[dict, str]] = []
behaviour: dict[str, object] = {}


@register_effect("test_effect")
def _test_effect(payload: dict, key: str) -> dict:
    calls.append((payload, key))
    outcome = behaviour.get(key)
    if isinstance(outcome, Exception):
        raise outcome
    return {"ok": True}


gate = threading.Event()


@register_effect("slow_effect")
def _slow_effect(payload: dict, key: str) -> dict:
    """An effect that takes longer than its lease (a callback waiting to be answered)."""
    calls.append((payload, key))
    gate.wait(PATIENCE)
    return {"ok": True}


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()
    behaviour.clear()
    gate.clear()
    yield
    gate.set()  # a failed test leaves no effect blocked


def rows(db):
    with db.session() as s:
        return {r.idempotency_key: (r.status, r.attempts, r.last_error) for r in s.scalars(select(OutboxItem))}


def claim(db, kinds=("test_effect",), lease_seconds=60, **kw):
    with db.session() as s:
        return claim_due(s, lease_seconds=lease_seconds, limit=100, kinds=list(kinds), **kw)


def lease_until(db, key):
    with db.session() as s:
        return s.scalar(select(OutboxItem.lease_until).where(OutboxItem.idempotency_key == key))


def test_enqueue_is_idempotent_and_claims_only_due_rows_of_known_kinds(db):
    with db.session() as s:
        enqueue(s, "test_effect", {"n": 1}, key="a")
        enqueue(s, "test_effect", {"n": 2}, key="a")  # the same effect again: ignored
        enqueue(s, "test_effect", {"n": 3}, key="later", due_at=utcnow() + timedelta(hours=3))
        enqueue(s, "no_such_plugin", {"n": 4}, key="orphan")
    assert set(rows(db)) == {"a", "later", "orphan"}
    claims = claim(db, kinds=("test_effect", "no_such_plugin")[:1])
    assert len(claims) == 1
    assert perform(db, claims[0], max_attempts=5) == "done"
    assert calls == [({"n": 1}, "a")]
    assert rows(db)["a"][0] == "done" and rows(db)["later"][0] == "pending" and rows(db)["orphan"][0] == "pending"
    assert claim(db) == []  # nothing due: the 3-hour row waits as a row, not as a Celery ETA


def test_failure_backs_off_then_succeeds(db):
    with db.session() as s:
        enqueue(s, "test_effect", {}, key="flaky")
    behaviour["flaky"] = EffectError("SMSC busy")
    assert perform(db, claim(db)[0], max_attempts=5) == "pending"
    status, attempts, error = rows(db)["flaky"]
    assert (status, attempts) == ("pending", 1) and "SMSC busy" in error
    assert claim(db) == []  # not before its back-off
    del behaviour["flaky"]
    later = utcnow() + timedelta(seconds=BACKOFF[0] + 1)
    assert perform(db, claim(db, now=later)[0], max_attempts=5) == "done"
    assert rows(db)["flaky"][:2] == ("done", 2)


def test_permanent_failure_is_recorded_on_the_case_timeline(db, core, people):
    with db.session() as s:
        case = core.create_case(s, NewCase(description="井盖丢失", category_key="C0114", district_code="440304"),
                                people["agent1"]).case
        enqueue(s, "test_effect", {}, key="doomed", case_id=case.id)
    behaviour["doomed"] = PermanentEffectError("number is not a mobile")
    assert perform(db, claim(db)[0], max_attempts=5) == "failed"
    with db.session() as s:
        last = s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id.desc())).first()
        assert last.action == "effect_failed" and "number is not a mobile" in last.note


def test_gives_up_after_max_attempts(db):
    with db.session() as s:
        enqueue(s, "test_effect", {}, key="down")
    behaviour["down"] = EffectError("connection refused")
    now = utcnow()
    for _ in range(3):
        status = perform(db, claim(db, now=now)[0], max_attempts=3)
        now += timedelta(hours=2)
    assert status == "failed" and rows(db)["down"][:2] == ("failed", 3)


def test_expired_lease_is_reclaimed_and_the_stale_claim_cannot_finish(db):
    with db.session() as s:
        enqueue(s, "test_effect", {}, key="k")
    first = claim(db)[0]
    assert claim(db) == []  # leased
    second = claim(db, now=utcnow() + timedelta(seconds=61))[0]  # the first worker died
    assert second.item_id == first.item_id and second.token != first.token
    assert perform(db, first, max_attempts=5) == "stale"
    assert perform(db, second, max_attempts=5) == "done"
    assert [k for _, k in calls] == ["k"]  # the stale claim never ran the effect


def test_an_effect_running_past_its_lease_keeps_it_and_runs_once(db, clock):
    with db.session() as s:
        enqueue(s, "slow_effect", {}, key="long")
    first = claim(db, kinds=["slow_effect"], lease_seconds=1)[0]
    outcomes: list[str] = []
    threads = [threading.Thread(target=lambda: outcomes.append(perform(db, first, max_attempts=5)))]
    threads[0].start()
    wait_for(lambda: calls, what="the effect to start")
    clock.advance(seconds=30)  # the effect has now run far longer than the lease it was claimed with
    # the product clock jumped; give the running perform its chance to renew the lease (as it would have
    # every lease/3 s had time passed gradually) — without a heartbeat this just runs out its bound
    deadline = time.monotonic() + 30
    while lease_until(db, "long") <= clock() and time.monotonic() < deadline:
        time.sleep(0.05)
    again = claim(db, kinds=["slow_effect"], lease_seconds=1)  # beat's next tick, past the original lease
    for c in again:  # had it been re-claimed, the new claim's task would run now
        threads.append(threading.Thread(target=lambda c=c: outcomes.append(perform(db, c, max_attempts=5))))
        threads[-1].start()
    gate.set()
    for t in threads:
        t.join(PATIENCE)
    assert [k for _, k in calls] == ["long"]  # the effect body ran exactly once
    assert again == [] and outcomes == ["done"]
    assert rows(db)["long"][:2] == ("done", 1)


def test_claims_taken_over_while_queued_neither_run_nor_count(db, clock):
    with db.session() as s:
        enqueue(s, "test_effect", {}, key="queued")
    first = claim(db)[0]
    clock.advance(seconds=61)  # its task was still queued in Celery when the lease ran out
    assert perform(db, first, max_attempts=5) == "stale"  # the lease expired before perform began
    second = claim(db)[0]
    clock.advance(seconds=61)
    third = claim(db)[0]  # the second's task, too, waited past its lease: beat claimed the row again
    assert perform(db, second, max_attempts=5) == "stale"  # taken over by a newer claim
    assert calls == [] and rows(db)["queued"][:2] == ("running", 0)  # claims alone burn no attempts
    assert perform(db, third, max_attempts=5) == "done"
    assert [k for _, k in calls] == ["queued"] and rows(db)["queued"][:2] == ("done", 1)


def test_concurrent_claimers_never_share_a_row(db):
    with db.session() as s:
        for i in range(60):
            enqueue(s, "test_effect", {"i": i}, key=f"r{i}")
    got: list[int] = []
    lock = threading.Lock()

    def claimer():
        for _ in range(10):
            with db.session() as s:
                ids = [c.item_id for c in claim_due(s, 60, 4, kinds=["test_effect"])]
            with lock:
                got.extend(ids)

    run_concurrently(claimer, threads=4)
    assert len(got) == 60 and len(set(got)) == 60


def test_webhook_effect_posts_with_the_idempotency_key(db, core, people):
    import case_bridge.webhook  # noqa: F401  (registers the effect)
    with WebhookReceiver() as receiver:
        with db.session() as s:
            s.get(HandlingUnit, "440304").webhook_url = receiver.url
        with db.session() as s:
            n = core.create_case(s, NewCase(description="占道经营", category_key="E0504", district_code="440304",
                                            place_confirmed=True), people["agent1"]).case.number
        with db.session() as s:
            core.apply_action(s, n, "urge", people["disp1"], ActionIn(note="请尽快处理"))
        claims = claim(db, kinds=["webhook"], now=core.now())
        assert [perform(db, c, max_attempts=5) for c in claims] == ["done", "done"]
    bodies = list(receiver.applied.values())
    assert [b["event"] for b in bodies] == ["case.dispatched", "case.urged"]
    assert bodies[0]["case"]["number"] == n and bodies[0]["case"]["handling_unit"] == "440304"
    assert all(k.startswith("webhook:") for k in receiver.applied)


def test_webhook_refused_by_the_receiver_is_permanent(db):
    import case_bridge.webhook  # noqa: F401
    with WebhookReceiver() as receiver:
        receiver.status = 404
        with db.session() as s:
            enqueue(s, "webhook", {"url": receiver.url, "body": {}}, key="w404")
            enqueue(s, "webhook", {"url": "file:///etc/passwd", "body": {}}, key="wfile")
        statuses = sorted(perform(db, c, max_attempts=5) for c in claim(db, kinds=["webhook"]))
    assert statuses == ["failed", "failed"]
    assert "HTTP 404" in rows(db)["w404"][2] and "not an http(s) URL" in rows(db)["wfile"][2]


def test_nothing_is_written_when_the_causing_change_rolls_back(db):
    with pytest.raises(RuntimeError):
        with db.session() as s:
            enqueue(s, "test_effect", {}, key="ghost")
            raise RuntimeError("the case change failed")
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(OutboxItem)) == 0
