"""Call records from the AMI side: bus notices → rows in `calls` (see ivr.calls).

Runs as a bus subscriber so that the AMI reader never waits for the database; each write
runs in a worker thread. A recording is registered only once MixMonitor has finished with it:
at the call's end the path is stored, and its size and duration follow when the file reads as a
whole WAV file of the same size twice in a row (retried with back-off), never from a file that is
still being written.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from ivr.calls import RecordingRejected, record_call, recording_facts
from hotline.bus import BusEvent, EventBus
from hotline.db import Database
from hotline.phone import InvalidPhoneNumber, normalise
from hotline.settings import Settings

log = logging.getLogger(__name__)

TIMES = ("started_at", "queued_at", "answered_at", "ended_at")
# waits between looks at a recording that is still being written (about a minute in all)
SETTLE_DELAYS = (0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6)


class CallRecorder:
    def __init__(self, settings: Settings, db: Database, settle_delays: tuple[float, ...] = SETTLE_DELAYS) -> None:
        self.settings = settings
        self.db = db
        self.written = 0
        self.settle_delays = settle_delays
        self._settling: set[asyncio.Task] = set()

    def attach(self, bus: EventBus) -> None:
        for topic in ("call.started", "call.agent_connect", "call.ended", "call.voicemail"):
            bus.subscribe(topic, self.on_event)

    async def on_event(self, event: BusEvent) -> None:
        fields = self.fields(event.topic, event.data)
        if fields is None:
            return
        uniqueid, ivr, values = fields
        try:
            await asyncio.to_thread(self._write, uniqueid, ivr, values)
        except Exception:
            log.exception("call %s: %s not recorded", uniqueid, event.topic, extra={"uniqueid": uniqueid})
            return
        if event.topic == "call.ended" and values.get("recording_path"):
            task = asyncio.create_task(self._settle(uniqueid, event.data["recording_path"]))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)

    async def _settle(self, uid: str, path: str) -> None:
        """Size and duration of a finished recording, read when the file has stopped changing."""
        last_size = None
        for delay in (0.0, *self.settle_delays):
            await asyncio.sleep(delay)
            try:
                relative, size, seconds = await asyncio.to_thread(recording_facts, path,
                                                                  self.settings.asterisk_spool_dir, True)
            except RecordingRejected:
                return
            # a header still saying 0 frames over a file of audio is one MixMonitor has not closed yet
            finished = seconds is not None and (seconds > 0 or (size or 0) <= 64)
            if size is not None and finished and size == last_size:
                values = {"recording_path": relative, "recording_bytes": size, "recording_seconds": seconds}
                await asyncio.to_thread(self._write, uid, None, values)
                return
            last_size = size
        log.warning("call %s: recording %s was still changing or unreadable after %.0f s; its size and duration "
                    "are not known", uid, path, sum(self.settle_delays), extra={"uniqueid": uid})

    async def stop(self) -> None:
        """Stop waiting for recordings (a restart loses only their size and duration, never the path)."""
        for task in list(self._settling):
            task.cancel()
        await asyncio.gather(*self._settling, return_exceptions=True)

    def fields(self, topic: str, data: dict[str, Any]) -> tuple[str, dict | None, dict[str, Any]] | None:
        uid = data.get("uniqueid")
        if not uid:
            return None
        if topic == "call.started":
            return uid, None, {"channel": data.get("channel"), "caller": self.number(data.get("caller")),
                               "caller_name": data.get("caller_name"), "dialled": data.get("dialled")}
        if topic == "call.agent_connect":
            return uid, None, {"agent": data.get("agent"), "queue": data.get("queue"),
                               "wait_seconds": data.get("wait_seconds")}
        if topic == "call.voicemail":
            return uid, {"voicemail": self.spool_relative(uid, data.get("path"))}, {"outcome": "voicemail"}
        values = {k: data.get(k) for k in ("linkedid", "channel", "caller_name", "dialled", "queue", "agent",
                                           "wait_seconds", "talk_seconds", "hangup_cause", "outcome")}
        values["caller"] = self.number(data.get("caller"))
        for k in TIMES:
            values[k] = datetime.fromisoformat(data[k]) if data.get(k) else None
        if data.get("recording_path"):
            values.update(self.recording(uid, data["recording_path"]))
        voicemail = self.spool_relative(uid, data.get("voicemail_path"))
        return uid, ({"voicemail": voicemail} if voicemail else None), values

    def recording(self, uid: str, path: str) -> dict[str, Any]:
        """The path at once; the size and duration once the file is finished (`_settle`)."""
        try:
            relative = recording_facts(path, self.settings.asterisk_spool_dir, path_only=True)[0]
        except RecordingRejected as exc:
            log.error("call %s: %s", uid, exc)
            return {}
        return {"recording_path": relative}

    def spool_relative(self, uid: str, path: str | None) -> str | None:
        """A message recording's path as stored: relative to the spool, like call recordings."""
        if not path:
            return None
        try:
            return recording_facts(path, self.settings.asterisk_spool_dir)[0]
        except RecordingRejected as exc:
            log.error("call %s: voicemail %s", uid, exc)
            return None

    def number(self, raw: str | None) -> str | None:
        if not raw:
            return None
        try:
            return normalise(raw, self.settings.phone_region).e164
        except InvalidPhoneNumber:
            return raw[:40]

    def _write(self, uniqueid: str, ivr: dict | None, values: dict[str, Any]) -> None:
        with self.db.session() as s:
            record_call(s, uniqueid, ivr=ivr, **values)
        self.written += 1
