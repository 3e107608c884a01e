"""What the AMI event stream means: live calls, queues and their members.

`CallCentreState.apply(message)` folds one AMI event into the state and returns the bus
notices it causes (topic, data) — synchronously and without I/O, so it keeps up with the
event stream. Facts seen on Asterisk 22 that this relies on:

- event names and header names are case-sensitive as sent (`Uniqueid` in channel events);
- the caller leg is the channel whose `Uniqueid` equals its `Linkedid`; agent legs share it;
- `QueueCallerLeave` comes *before* `AgentConnect`; their HoldTime/RingTime are seconds,
  while `AgentRingNoAnswer`'s RingTime is milliseconds;
- the recording path is only in `VarSet MIXMONITOR_FILENAME` (no `MixMonitorStop` on hangup);
- `Hangup` and `Cdr` for one channel come in either order;
- list items (`CoreShowChannel`, `QueueMember`) have no Timestamp; a channel's `Duration` is `HH:MM:SS`.

Resync after a (re)connect: `begin_resync` before QueueStatus and CoreShowChannels are sent, then
`end_resync(items)` with their items. Live events in between are held back and applied after the
lists, because they are newer (a caller joining, a Hangup of a listed channel); recent hang-ups are
kept as tombstones so that a list still showing such a channel does not bring the call back.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Callable, Mapping

from hotline import clock

Notice = tuple[str, dict[str, Any]]
TRANSFER_CONTEXT = "hotline-transfer"   # where AMI Redirect puts a live caller (asterisk_conf)
# a caller leg in one of these contexts has passed the MixMonitor of hotline-inbound (asterisk_conf)
RECORDED_CONTEXTS = {"hotline-inbound", TRANSFER_CONTEXT, "hotline-voicemail"}
# a hung-up channel that a list still shows is not brought back for this long, for this many channels
TOMBSTONE_SECONDS = 120.0
TOMBSTONE_LIMIT = 1000

MEMBER_STATUS = {"0": "unknown", "1": "idle", "2": "in_use", "3": "busy", "4": "invalid",
                 "5": "unavailable", "6": "ringing", "7": "ring_in_use", "8": "on_hold"}


def _time(event: Mapping[str, Any]) -> datetime:
    stamp = event.get("Timestamp")
    try:
        return datetime.fromtimestamp(float(stamp), timezone.utc)
    except (TypeError, ValueError):
        return clock.now()


def _elapsed(duration: Any) -> timedelta:
    """CoreShowChannel's `Duration: HH:MM:SS` (hours can pass 24); zero when absent."""
    try:
        hours, minutes, seconds = (int(part) for part in str(duration).split(":"))
    except ValueError:
        return timedelta(0)
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def recording_path_for(uniqueid: str, started_at: datetime, zone: tzinfo | None = None) -> str:
    """The call recording's path under the spool as hotline-inbound names it:
    `Set(HOTLINE_REC=${STRFTIME(${EPOCH},,%Y/%m/%d)}/${UNIQUEID}.wav)`, i.e. the date in the PBX's
    time zone (`zone`; None: this host's). EPOCH is read just after Answer, so a call that starts in
    the last seconds before midnight may be filed under the next day."""
    return f"{started_at.astimezone(zone):%Y/%m/%d}/{uniqueid}.wav"


def _num(value: Any, scale: float = 1.0) -> float | None:
    try:
        return float(value) / scale
    except (TypeError, ValueError):
        return None


def _dialled(exten: Any) -> str | None:
    """The number dialled; `s` is the start extension an Originate or a trunk without DID lands on."""
    return None if exten == "s" else known(exten)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def _shallow(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def known(value: Any) -> str | None:
    """None for what Asterisk sends when it does not know (empty, unknown, <unknown>, anonymous)."""
    if value is None or str(value).strip().lower() in ("", "unknown", "<unknown>", "anonymous"):
        return None
    return str(value)


@dataclass
class LiveCall:
    uniqueid: str
    linkedid: str
    channel: str
    caller: str | None = None
    caller_name: str | None = None
    dialled: str | None = None
    started_at: datetime | None = None
    queue: str | None = None
    position: int | None = None
    queued_at: datetime | None = None
    answered_at: datetime | None = None
    agent: str | None = None
    agent_channel: str | None = None
    ended_at: datetime | None = None
    wait_seconds: float | None = None
    talk_seconds: float | None = None
    hangup_cause: int | None = None
    outcome: str | None = None
    recording_path: str | None = None
    voicemail_path: str | None = None
    variables: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = _shallow(self)   # dataclasses.asdict deep-copies: too slow for every event
        out["variables"] = dict(self.variables)
        for k, v in out.items():
            if isinstance(v, datetime):
                out[k] = v.isoformat()
        return out


@dataclass
class Member:
    interface: str
    queue: str
    name: str = ""
    status: str = "unknown"
    paused: bool = False
    paused_reason: str = ""
    in_call: bool = False
    calls_taken: int = 0
    last_call: float = 0.0
    wrapup_seconds: int = 0

    def summary(self) -> dict[str, Any]:
        return _shallow(self)


@dataclass
class QueueState:
    name: str
    members: dict[str, Member] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)    # caller uniqueid → position
    completed: int = 0
    abandoned: int = 0


class CallCentreState:
    def __init__(self, clock: Callable[[], float] = time.time, zone: tzinfo | None = None) -> None:
        self.calls: dict[str, LiveCall] = {}      # caller legs, by uniqueid
        self.channels: dict[str, str] = {}        # every live channel name → its uniqueid
        self.queues: dict[str, QueueState] = {}
        self.devices: dict[str, str] = {}         # phone device (PJSIP/1001) → its state (NOT_INUSE, UNAVAILABLE…)
        self.clock = clock                        # for tombstones
        self.zone = zone                          # the PBX's time zone, for recording paths
        self._held: list[Mapping[str, Any]] | None = None   # live events during a resync
        self._tombstones: dict[str, float] = {}   # uniqueid → clock() at its Hangup, oldest first
        self.events_seen = 0
        self.unknown_events = 0
        self._handlers: dict[str, Callable[[Mapping[str, Any]], list[Notice]]] = {
            "Newchannel": self._newchannel, "VarSet": self._varset, "QueueCallerJoin": self._join,
            "QueueCallerLeave": self._leave, "QueueCallerAbandon": self._abandon, "AgentCalled": self._agent_called,
            "AgentConnect": self._agent_connect, "AgentComplete": self._agent_complete,
            "AgentRingNoAnswer": self._ring_no_answer, "Hangup": self._hangup,
            "QueueMemberStatus": self._member, "QueueMemberAdded": self._member, "QueueMember": self._member,
            "QueueMemberPause": self._member, "QueueMemberRemoved": self._member_removed,
            "QueueParams": self._params, "QueueEntry": self._entry, "CoreShowChannel": self._listed_channel,
            "UserEvent": self._user_event, "Cdr": self._cdr, "DeviceStateChange": self._device_state,
        }

    # ----------------------------------------------------------------------------- entry
    def apply(self, event: Mapping[str, Any]) -> list[Notice]:
        if self._held is not None:
            self._held.append(event)
            return []
        self.events_seen += 1
        handler = self._handlers.get(event.get("Event", ""))
        if handler is None:
            self.unknown_events += 1
            return []
        return handler(event)

    def queue(self, name: str) -> QueueState:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = QueueState(name)
        return q

    def begin_resync(self) -> None:
        """Before QueueStatus and CoreShowChannels are sent: hold live events back from here on."""
        self._held = []

    def end_resync(self, items: list[Mapping[str, Any]] | None,
                   apply: Callable[[Mapping[str, Any]], list[Notice]] | None = None) -> list[Notice]:
        """Rebuild queues and live calls from the list items, then apply the events held back.
        `items` None: the lists did not come (link lost); only the held events are applied.
        `apply` takes one event (the client passes its own, which survives a failing event)."""
        apply = apply or self.apply
        held, self._held = self._held or [], None
        notices: list[Notice] = []
        if items is not None:
            for q in self.queues.values():
                q.members.clear()
                q.waiting.clear()
            alive: set[str] = set()
            for item in items:
                if item.get("Event") == "CoreShowChannel":
                    if self._hung_up(item.get("Uniqueid", "")):
                        continue
                    alive.add(item.get("Uniqueid", ""))
                notices += apply(item)
            for uid in [u for u in self.calls if u not in alive]:   # ended unseen, while we were away
                call = self.calls.pop(uid)
                call.ended_at = call.ended_at or clock.now()
                call.outcome = call.outcome or "lost_track"
                notices.append(("call.ended", call.summary()))
            self.channels = {name: uid for name, uid in self.channels.items() if uid in alive}
        for event in held:
            notices += apply(event)
        return notices

    def _hung_up(self, uid: str) -> bool:
        at = self._tombstones.get(uid)
        return at is not None and self.clock() - at <= TOMBSTONE_SECONDS

    def _bury(self, uid: str) -> None:
        now = self.clock()
        self._tombstones.pop(uid, None)
        self._tombstones[uid] = now
        while True:   # drop the oldest while there are too many or it has expired; `uid` itself stays
            oldest, at = next(iter(self._tombstones.items()))
            if len(self._tombstones) <= TOMBSTONE_LIMIT and now - at <= TOMBSTONE_SECONDS:
                break
            del self._tombstones[oldest]

    # ------------------------------------------------------------------------- channels
    def _newchannel(self, e: Mapping[str, Any]) -> list[Notice]:
        uid, linked, name = e.get("Uniqueid"), e.get("Linkedid"), e.get("Channel")
        if not uid or not name:
            return []
        self.channels[name] = uid
        if linked and linked != uid:
            return []  # an agent leg or a Local half: part of the caller's call
        if uid in self.calls:
            return []
        call = self.calls[uid] = LiveCall(uid, linked or uid, name, caller=known(e.get("CallerIDNum")),
                                         caller_name=known(e.get("CallerIDName")), dialled=_dialled(e.get("Exten")),
                                         started_at=_time(e) - _elapsed(e.get("Duration")))
        return [("call.started", {"uniqueid": uid, "caller": call.caller, "caller_name": call.caller_name,
                                  "channel": name, "dialled": call.dialled})]

    def _listed_channel(self, e: Mapping[str, Any]) -> list[Notice]:
        """A CoreShowChannels item: a channel that is up, perhaps since before we were connected."""
        notices = self._newchannel(e)
        call = self.calls.get(e.get("Uniqueid", ""))
        if call is not None and call.recording_path is None and e.get("Context") in RECORDED_CONTEXTS:
            # its VarSet MIXMONITOR_FILENAME went by while we were away
            call.recording_path = recording_path_for(call.uniqueid, call.started_at or clock.now(), self.zone)
            notices.append(("call.recording", {"uniqueid": call.uniqueid, "path": call.recording_path}))
        return notices

    def _varset(self, e: Mapping[str, Any]) -> list[Notice]:
        call = self.calls.get(e.get("Uniqueid", ""))
        if call is None:
            return []
        name, value = e.get("Variable", ""), e.get("Value", "")
        if name == "MIXMONITOR_FILENAME":
            call.recording_path = value
            return [("call.recording", {"uniqueid": call.uniqueid, "path": value})]
        if name.startswith("HOTLINE_"):
            call.variables[name] = value
        return []

    def _hangup(self, e: Mapping[str, Any]) -> list[Notice]:
        uid = e.get("Uniqueid", "")
        self.channels.pop(e.get("Channel", ""), None)
        if uid:
            self._bury(uid)
        call = self.calls.pop(uid, None)
        if call is None:
            return []
        call.ended_at = _time(e)
        cause = _num(e.get("Cause"))
        call.hangup_cause = int(cause) if cause is not None else None
        if call.outcome is None:
            call.outcome = "answered" if call.answered_at else ("abandoned" if call.queue else "ivr")
        if call.answered_at and call.talk_seconds is None:
            call.talk_seconds = (call.ended_at - call.answered_at).total_seconds()
        for q in self.queues.values():
            q.waiting.pop(uid, None)
        return [("call.ended", call.summary())]

    def _cdr(self, e: Mapping[str, Any]) -> list[Notice]:
        return []  # Hangup carries what we need; a Cdr may come before or after it

    def _user_event(self, e: Mapping[str, Any]) -> list[Notice]:
        if e.get("UserEvent") != "HotlineVoicemail":
            return []
        # a dialplan UserEvent carries the channel's own headers; a header the dialplan repeats
        # arrives as a list, of which the channel's (first) one counts
        uid, path = _first(e.get("Uniqueid", "")), _first(e.get("File"))
        call = self.calls.get(uid)
        if call is not None:
            call.outcome = "voicemail"
            call.voicemail_path = path
        return [("call.voicemail", {"uniqueid": uid, "caller": known(_first(e.get("Caller"))), "path": path})]

    # ---------------------------------------------------------------------------- queues
    def _join(self, e: Mapping[str, Any]) -> list[Notice]:
        uid, qname = e.get("Uniqueid", ""), e.get("Queue", "")
        position = int(_num(e.get("Position")) or 0)
        self.queue(qname).waiting[uid] = position
        call = self.calls.get(uid)
        if call is not None:
            call.queue, call.position, call.queued_at = qname, position, _time(e)
        return [("call.queued", {"uniqueid": uid, "queue": qname, "position": position,
                                 "caller": known(e.get("CallerIDNum"))})]

    def _leave(self, e: Mapping[str, Any]) -> list[Notice]:
        self.queue(e.get("Queue", "")).waiting.pop(e.get("Uniqueid", ""), None)
        return []

    def _abandon(self, e: Mapping[str, Any]) -> list[Notice]:
        uid, qname = e.get("Uniqueid", ""), e.get("Queue", "")
        q = self.queue(qname)
        q.waiting.pop(uid, None)
        call = self.calls.get(uid)
        wait = _num(e.get("HoldTime"))
        # a Redirect out of the queue lands at priority 1 of hotline-transfer: moved, not given up
        # (a caller who gives up in a district queue after a transfer is at its Queue() priority)
        if e.get("Context") == TRANSFER_CONTEXT and str(e.get("Priority")) == "1":
            if call is not None:
                call.outcome = "transferred"
            return [("call.transferred", {"uniqueid": uid, "from_queue": qname, "wait_seconds": wait})]
        q.abandoned += 1
        if call is not None:
            call.outcome = "abandoned"
            call.wait_seconds = wait
        return [("call.abandoned", {"uniqueid": uid, "queue": qname, "wait_seconds": wait})]

    def _agent_called(self, e: Mapping[str, Any]) -> list[Notice]:
        return [("call.agent_called", {"uniqueid": e.get("Uniqueid"), "queue": e.get("Queue"),
                                       "agent": e.get("MemberName") or e.get("Interface"),
                                       "interface": e.get("Interface"), "caller": known(e.get("CallerIDNum"))})]

    def _ring_no_answer(self, e: Mapping[str, Any]) -> list[Notice]:
        return [("call.agent_no_answer", {"uniqueid": e.get("Uniqueid"), "interface": e.get("Interface"),
                                          "ring_seconds": _num(e.get("RingTime"), 1000.0)})]

    def _agent_connect(self, e: Mapping[str, Any]) -> list[Notice]:
        uid = e.get("Uniqueid", "")
        call = self.calls.get(uid)
        data = {"uniqueid": uid, "queue": e.get("Queue"), "agent": e.get("MemberName") or e.get("Interface"),
                "interface": e.get("Interface"), "caller": known(e.get("CallerIDNum")),
                "caller_name": known(e.get("CallerIDName")), "wait_seconds": _num(e.get("HoldTime")),
                "ring_seconds": _num(e.get("RingTime"))}
        if call is not None:
            call.answered_at = _time(e)
            call.agent, call.agent_channel = data["agent"], e.get("DestChannel")
            call.wait_seconds = data["wait_seconds"]
            call.outcome = "answered"
            data["ivr"] = dict(call.variables)
        return [("call.agent_connect", data)]

    def _agent_complete(self, e: Mapping[str, Any]) -> list[Notice]:
        uid = e.get("Uniqueid", "")
        self.queue(e.get("Queue", "")).completed += 1
        call = self.calls.get(uid)
        if call is not None:
            call.talk_seconds = _num(e.get("TalkTime"))
        return [("call.agent_complete", {"uniqueid": uid, "agent": e.get("MemberName") or e.get("Interface"),
                                         "talk_seconds": _num(e.get("TalkTime")), "reason": e.get("Reason")})]

    def _member(self, e: Mapping[str, Any]) -> list[Notice]:
        qname = e.get("Queue", "")
        interface = e.get("Interface") or e.get("Location") or ""
        if not qname or not interface:
            return []
        q = self.queue(qname)
        m = q.members.get(interface) or Member(interface, qname)
        q.members[interface] = m
        m.name = e.get("MemberName") or e.get("Name") or m.name
        if "Status" in e:
            m.status = MEMBER_STATUS.get(str(e.get("Status")), "unknown")
        if "Paused" in e:
            m.paused = str(e.get("Paused")) == "1"
            m.paused_reason = e.get("PausedReason", "") if m.paused else ""
        if "InCall" in e:
            m.in_call = str(e.get("InCall")) == "1"
        m.calls_taken = int(_num(e.get("CallsTaken")) or m.calls_taken)
        m.last_call = _num(e.get("LastCall")) or m.last_call
        m.wrapup_seconds = int(_num(e.get("Wrapuptime")) or m.wrapup_seconds)
        if e.get("Event") == "QueueMember":
            return []  # a resync list item; the resync publishes once at its end
        return [("queue.member", m.summary())]

    def _device_state(self, e: Mapping[str, Any]) -> list[Notice]:
        device, state = str(e.get("Device", "")), str(e.get("State", ""))
        if not device.startswith("PJSIP/") or not state:
            return []   # queue and hint pseudo-devices
        if self.devices.get(device) == state:
            return []
        self.devices[device] = state
        return [("device.state", {"device": device, "state": state})]

    def phone(self, interface: str) -> dict[str, Any]:
        """An agent phone as the PBX sees it: registered or not, its queues, paused and why, in a call."""
        members = [q.members[interface] for q in self.queues.values() if interface in q.members]
        device = self.devices.get(interface)
        if device is not None:
            registered: bool | None = device not in ("UNAVAILABLE", "INVALID", "UNKNOWN")
        elif members:
            registered = not all(m.status in ("unavailable", "invalid") for m in members)
        else:
            registered = None   # not known until the phone changes state or joins a queue
        paused = [m for m in members if m.paused]
        return {"interface": interface, "registered": registered, "device_state": device,
                "queues": sorted(m.queue for m in members), "paused": bool(paused),
                "paused_reason": paused[0].paused_reason if paused else "",
                "in_call": any(m.in_call or m.status in ("in_use", "busy", "ringing", "ring_in_use") for m in members)}

    def call_of_agent(self, interface: str) -> LiveCall | None:
        """The live caller leg an agent phone answered."""
        for call in self.calls.values():
            if call.answered_at and (call.agent == interface or (call.agent_channel or "").startswith(interface + "-")):
                return call
        return None

    def _member_removed(self, e: Mapping[str, Any]) -> list[Notice]:
        q = self.queue(e.get("Queue", ""))
        m = q.members.pop(e.get("Interface", ""), None)
        return [("queue.member_removed", {"queue": q.name, "interface": e.get("Interface"),
                                          "name": m.name if m else e.get("MemberName")})]

    def _params(self, e: Mapping[str, Any]) -> list[Notice]:
        q = self.queue(e.get("Queue", ""))
        q.completed = int(_num(e.get("Completed")) or 0)
        q.abandoned = int(_num(e.get("Abandoned")) or 0)
        return []

    def _entry(self, e: Mapping[str, Any]) -> list[Notice]:
        self.queue(e.get("Queue", "")).waiting[e.get("Uniqueid", "")] = int(_num(e.get("Position")) or 0)
        return []

    # -------------------------------------------------------------------------- readouts
    def wallboard(self) -> dict[str, Any]:
        return {"queues": {name: {"waiting": len(q.waiting), "completed": q.completed, "abandoned": q.abandoned,
                                  "members": [m.summary() for m in q.members.values()]}
                           for name, q in sorted(self.queues.items())},
                "calls": len(self.calls)}
