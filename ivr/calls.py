"""Call records and their recordings (telephony owns the `calls` table).

A call is keyed by Asterisk's uniqueid. Its facts arrive from two sides in any order — the
FastAGI flow (what the caller pressed) and the AMI client (queue, agent, times, hangup,
recording) — so `record_call` merges: it only sets what it is given, and IVR choices
accumulate. The cases reported on a call carry its uniqueid (`Case.call_uniqueid`), which is
how the two are linked whichever comes first (the case core knows nothing of calls); one
call may bring several cases.
"""
from __future__ import annotations

import logging
import wave
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from case_bridge import Case
from ivr.models import Call
from hotline.db import conflict_insert, utcnow

log = logging.getLogger(__name__)

FIELDS = frozenset(c.name for c in Call.__table__.columns) - {"id", "uniqueid", "ivr", "case_id", "updated_at"}


class RecordingRejected(ValueError):
    """A recording path outside the recording spool (never served, never stat'ed)."""


def record_call(session: Session, uniqueid: str, ivr: dict[str, Any] | None = None, case_id: int | None = None,
                **fields: Any) -> Call:
    """Create or update the call `uniqueid` with the given facts (None values are ignored).
    `case_id` links a call that is about a case without having created it (a survey callback)."""
    unknown = set(fields) - FIELDS
    if unknown:
        raise TypeError(f"unknown call fields: {', '.join(sorted(unknown))}")
    session.execute(conflict_insert(session, Call).values(uniqueid=uniqueid, direction=fields.get("direction") or "in",
                                                ivr={}, updated_at=utcnow())
                    .on_conflict_do_nothing(index_elements=["uniqueid"]))
    call = session.scalar(select(Call).where(Call.uniqueid == uniqueid).with_for_update())
    for name, value in fields.items():
        if value is not None:
            setattr(call, name, value)
    if ivr:
        call.ivr = {**(call.ivr or {}), **ivr}
        if ivr.get("voicemail") and call.message_state is None:
            call.message_state = "open"    # a message for the agents' list (ivr.voicemail)
    if case_id is not None:
        call.case_id = case_id
    if call.case_id is None:
        call.case_id = session.scalar(select(Case.id).where(Case.call_uniqueid == uniqueid).order_by(Case.id).limit(1))
    call.updated_at = utcnow()
    session.flush()
    return call


def recording_facts(path: str, spool_dir: Path, quiet: bool = False,
                    path_only: bool = False) -> tuple[str, int | None, float | None]:
    """(path relative to the spool, size in bytes, duration in seconds) of a recording Asterisk
    reported. The size and duration are known only when the spool is visible from here and the
    file reads as a WAV file (None while MixMonitor is still writing it)."""
    spool = spool_dir.resolve()
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = spool / candidate
    resolved = candidate.resolve()
    if not resolved.is_relative_to(spool) or resolved.suffix.lower() not in (".wav", ".gsm", ".wav49"):
        raise RecordingRejected(f"recording {path!r} is not a sound file under {spool}")
    relative = resolved.relative_to(spool).as_posix()
    if path_only or not resolved.is_file():
        return relative, None, None
    size = resolved.stat().st_size
    duration = None
    try:
        with wave.open(str(resolved), "rb") as w:
            duration = w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError, OSError, ZeroDivisionError) as exc:
        (log.debug if quiet else log.warning)("recording %s: size %s but no readable WAV header (%s)",
                                              relative, size, exc)
    return relative, size, duration


def calls_of_case(session: Session, case_id: int) -> list[Call]:
    """The call the case was reported on and the calls about it (survey callbacks)."""
    reported_on = select(Case.call_uniqueid).where(Case.id == case_id).scalar_subquery()
    return list(session.scalars(select(Call).where(or_(Call.case_id == case_id, Call.uniqueid == reported_on))
                                .order_by(Call.id)))


def calls_from(session: Session, number: str, since: datetime) -> int:
    """How many inbound calls this number made since then (重复来电)."""
    return session.scalar(select(func.count()).select_from(Call).where(
        Call.caller == number, Call.direction == "in", Call.started_at >= since)) or 0


def current_call_of(session: Session, interface: str, since: datetime) -> Call | None:
    """The call an agent phone answered and that has not ended (the desk's call after a reload)."""
    return session.scalar(select(Call).where(Call.agent == interface, Call.ended_at.is_(None),
                                             Call.updated_at >= since).order_by(Call.id.desc()).limit(1))


def get_call(session: Session, uniqueid: str) -> Call | None:
    return session.scalar(select(Call).where(Call.uniqueid == uniqueid))


def recording_file(call: Call, spool_dir: Path) -> Path | None:
    """The call's recording on disk, or None: a stored path that leaves the spool folder is refused."""
    if not call.recording_path:
        return None
    root = Path(spool_dir).resolve()
    path = (root / call.recording_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path
