"""The agents' voicemail work list: messages left after hours or when nobody answered the queue.

A message is a call whose IVR record holds a voicemail file (`calls.ivr["voicemail"]`, relative
to the recording spool). `record_call` opens it as a work item when the file is reported; an
agent listens and then makes a case of it, joins it to an open case of the caller, or dismisses
it with a reason (silence, a wrong number). Each way is written on the call (who, when, why),
so a message is never worked twice and never forgotten.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from case_bridge import Case, CaseCore, NewCase
from ivr.calls import RecordingRejected, recording_facts
from ivr.models import Call
from hotline.accounts import Actor
from hotline.db import utcnow


class MessageNotOpen(LookupError):
    """No such voicemail waiting for an agent."""


def open_messages(session: Session, spool_dir: Path, limit: int = 200) -> list[dict[str, Any]]:
    """The messages waiting, oldest first, with how long each one is."""
    calls = session.scalars(select(Call).where(Call.message_state == "open")
                            .order_by(Call.started_at, Call.id).limit(limit))
    return [message_out(call, spool_dir) for call in calls]


def _seconds(call: Call, spool_dir: Path) -> float | None:
    """The message's length; None while its file cannot be read from here."""
    try:
        return recording_facts(call.ivr["voicemail"], spool_dir, quiet=True)[2]
    except (RecordingRejected, KeyError, TypeError):
        return None


def message_out(call: Call, spool_dir: Path) -> dict[str, Any]:
    seconds = _seconds(call, spool_dir)
    return {"uniqueid": call.uniqueid, "caller": call.caller, "caller_name": call.caller_name,
            "left_at": (call.ended_at or call.started_at or call.updated_at).isoformat(),
            "queue": call.queue, "district_code": call.district_code,
            "why": "closed_hours" if call.intent == "closed" else "no_agent", "seconds": seconds,
            "state": call.message_state}


def message_file(session: Session, uniqueid: str, spool_dir: Path) -> Path:
    """The sound file of a message: only a path the recorder stored, and only inside the spool."""
    call = session.scalar(select(Call).where(Call.uniqueid == uniqueid, Call.message_state.is_not(None)))
    if call is None or not (call.ivr or {}).get("voicemail"):
        raise MessageNotOpen(f"no voicemail on call {uniqueid}")
    try:
        relative = recording_facts(call.ivr["voicemail"], spool_dir, path_only=True)[0]
    except RecordingRejected:
        raise MessageNotOpen(f"the voicemail of call {uniqueid} is not in the recording spool") from None
    path = spool_dir.resolve() / relative
    if not path.is_file():
        raise MessageNotOpen(f"the voicemail file of call {uniqueid} is not there (yet)")
    return path


def _open(session: Session, uniqueid: str) -> Call:
    call = session.scalar(select(Call).where(Call.uniqueid == uniqueid).with_for_update())
    if call is None or call.message_state != "open":
        raise MessageNotOpen(f"no voicemail waiting on call {uniqueid}")
    return call


def _handled(call: Call, state: str, actor: Actor, note: str) -> None:
    call.message_state, call.message_note = state, note[:200]
    call.message_handled_by, call.message_handled_at = actor.username or actor.label, utcnow()


def convert(session: Session, core: CaseCore, uniqueid: str, actor: Actor, data: NewCase) -> Case:
    """Make the message a case: channel phone, the caller's number, reported on this call."""
    call = _open(session, uniqueid)
    fields = data.model_dump()
    fields.update(channel="phone", call_uniqueid=uniqueid, idempotency_key=f"voicemail:{uniqueid}",
                  caller_phone=data.caller_phone or call.caller)
    case = core.create_case(session, NewCase(**fields), actor).case
    _handled(call, "converted", actor, f"立案 {case.number}")
    if call.case_id is None:
        call.case_id = case.id
    return case


def merge(session: Session, core: CaseCore, uniqueid: str, case_number: str, actor: Actor) -> Case:
    """The message is about a case that is still open: it joins that case's timeline."""
    call = _open(session, uniqueid)
    case = core.case_to_join(session, case_number, actor, "a voicemail")
    core.add_note(session, case, actor, "voicemail_merged", f"语音留言（通话 {uniqueid}，来电 {call.caller or '未知'}）",
                  {"uniqueid": uniqueid, "caller": call.caller})
    _handled(call, "merged", actor, f"并入 {case.number}")
    return case


def dismiss(session: Session, uniqueid: str, actor: Actor, reason: str) -> None:
    """Nothing to do (a silent or mistaken message): closed with the reason, kept on the call."""
    reason = reason.strip()
    if not reason:
        raise ValueError("say why the message needs no case (e.g. 空白留言, 打错电话)")
    _handled(_open(session, uniqueid), "dismissed", actor, reason)
