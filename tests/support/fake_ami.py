"""A fake Asterisk Manager Interface (AMI) server: Asterisk's side of AMI over real TCP sockets.

It is the test peer for our AMI client (``ivr/ami.py``). Every reply it writes is modelled byte for
byte on what a real **Asterisk 22.10.1** sent (banner ``Asterisk Call Manager/11.0.0``, manager.conf
with ``timestampevents = yes``), recorded on a loopback test PBX; the recordings are in
``tests/fixtures/asterisk22/`` and are read through :mod:`tests.support.transcripts`:

* ``ami_actions.jsonl`` — banner; Login (reply, ``FullyBooted`` without Timestamp and
  ``SuccessfulAuth`` in the same read); Ping with and without ActionID; the QueueStatus, QueueSummary
  and CoreShowChannels lists; QueueAdd / QueuePause / QueueRemove with their error variants and
  ``QueueMember*`` events; Getvar / Setvar; MixMonitor / StopMixMonitor replies; Redirect; Originate
  (async ``OriginateResponse`` events with Reason 4 / 3 / 0, and the synchronous ``Originate failed``);
  Command; an unknown action; Logoff; a wrong secret (error ~1 s late, then close); actions before
  Login (``Permission denied``, connection stays open); an unknown user.
* ``ami_utf8.jsonl`` — raw UTF-8 in header values both ways; the UserEvent action and its event.
* ``ami_restart.jsonl`` — ``Event: Shutdown`` then close; refused connects while down; first
  reconnect accepted then reset.
* ``ami_queue_answered.jsonl`` and the other event streams — replayed by :meth:`FakeAMI.play`.

Modelled: framing (``\\r\\n`` lines, blank line ends a message; ``\\n`` alone accepted from clients, as
Asterisk does), case-insensitive action names and header lookup, ActionID echoed as the *second*
header of a reply (absent when the action had none), per-session serial processing (a failed Login
blocks the session for ``auth_delay``), events to every logged-in session that asked for them
(``Events: off`` gets none). The state behind the replies is plain data a test sets: ``queues``,
``channels``, ``variables``, ``global_variables``, ``commands``; QueueAdd/Remove/Pause change
``queues``.

Not modelled (a client should not rely on the fake for these): the call events around an Originate
(only the ``OriginateResponse`` is sent), ``QueueEntry`` items, ``Events:`` masks, MD5 Challenge
login, and most other actions. A known Asterisk action that the fake does not model gets
``Response: Error`` / ``Message: FakeAMI does not model action X`` and is listed in ``unmodelled``,
so a test fails loudly instead of passing on an invented reply.

Ways to break things on purpose: ``split`` (write every reply in pieces, down to single bytes, so a
UTF-8 character straddles two TCP reads), :meth:`push` (raw bytes), ``reply_delay``, ``mute_pings``,
``before_list_complete`` (events inside a QueueStatus or CoreShowChannels list), :meth:`drop` (abort
every connection), :meth:`restart` (Shutdown event, refuse connections for a while, listen again on
the same port).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.support import transcripts
from tests.support.peer_server import PeerServer

BANNER = b"Asterisk Call Manager/11.0.0\r\n"

ORIGINATE_OUTCOMES = ("answered", "noanswer", "busy", "failed")
# OriginateResponse Reason per outcome, as observed on Asterisk 22.10.1 (ami_actions c-30 … c-36):
# 4 = answered, 3 = rang and was not answered, 0 = failure — and, in this build, 486 Busy is 0 too.
_ORIGINATE_REASON = {"answered": "4", "noanswer": "3", "busy": "0", "failed": "0"}

# Actions that exist in Asterisk 22 but that this fake does not answer faithfully. They get a loud
# error instead of Asterisk's "Invalid/unknown command" (which would be a lie about Asterisk).
_UNMODELLED = frozenset(name.lower() for name in (
    "AbsoluteTimeout", "AGI", "AOCMessage", "Atxfer", "BlindTransfer", "Bridge", "BridgeDestroy", "BridgeInfo",
    "BridgeKick", "BridgeList", "Challenge", "ChangeMonitor", "ConfbridgeList", "CoreSettings",
    "CoreShowChannelMap", "CoreStatus", "CreateConfig", "DBDel", "DBDelTree", "DBGet", "DBGetTree", "DBPut",
    "DeviceStateList", "DialplanExtensionAdd", "DialplanExtensionRemove", "Events", "ExtensionState",
    "ExtensionStateList", "Filter", "GetConfig", "GetConfigJSON", "Hangup", "ListCategories", "ListCommands",
    "LoggerRotate", "MailboxCount", "MailboxStatus", "MessageSend", "ModuleCheck", "ModuleLoad", "Park",
    "ParkedCalls", "PlayDTMF", "PJSIPNotify", "PJSIPQualify", "PJSIPShowContacts", "PJSIPShowEndpoint",
    "PJSIPShowEndpoints", "PJSIPShowRegistrationsInbound", "PresenceState", "QueueChangePriorityCaller",
    "QueueLog", "QueueMemberRingInUse", "QueuePenalty", "QueueReload", "QueueReset", "QueueRule", "Queues",
    "QueueWithdrawCaller", "Reload", "SendText", "ShowDialPlan", "Status", "UpdateConfig",
    "VoicemailUsersList", "WaitEvent",
))

_TRUE = frozenset({"yes", "true", "y", "t", "1", "on"})  # Asterisk's ast_true()


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def _now_ts() -> str:
    return f"{time.time():.6f}"


def _tv(epoch: float) -> str:
    """``EventTV`` / ``SessionTV`` format of security events: ``2026-11-21T05:59:38.616+0000``."""
    dt = datetime.fromtimestamp(epoch, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"


Headers = list[tuple[str, str]]


def encode(headers: Iterable[tuple[str, str]]) -> bytes:
    """One AMI message: ``Key: Value\\r\\n`` per header, then the empty line. Values go out as raw UTF-8."""
    return ("".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("utf-8")


def _get(action: Mapping[str, Any], key: str) -> str | None:
    """Case-insensitive header lookup (Asterisk's astman_get_header); the first value if repeated."""
    for k, v in action.items():
        if k.lower() == key.lower():
            return v[0] if isinstance(v, list) else v
    return None


def _parse_callerid(value: str | None) -> tuple[str, str]:
    """``"Name" <num>`` → (num, name); missing parts are Asterisk's literal ``<unknown>``."""
    if not value:
        return "<unknown>", "<unknown>"
    match = re.fullmatch(r'\s*(?:"([^"]*)"|([^<]*?))\s*<([^>]*)>\s*', value)
    if match:
        name = match.group(1) if match.group(1) is not None else match.group(2)
        return match.group(3) or "<unknown>", name or "<unknown>"
    return value.strip() or "<unknown>", "<unknown>"


def replay_plan(name: str, conn: int = 1, *, keep_action_events: bool = False) -> list[tuple[float, bytes]]:
    """What :meth:`FakeAMI.play` writes for transcript ``name``: one ``(t, bytes)`` per recorded read.

    Kept: messages that start with ``Event:``. Dropped: the banner, every ``Response:`` message (the
    replies to the recorded client's own actions, including the second half of a reply that arrived
    in two reads), the ``FullyBooted`` / ``SuccessfulAuth`` of the recorded client's login, and — unless
    ``keep_action_events`` — events carrying the ActionID of one of the recorded client's actions
    (``OriginateResponse``, list items, the UserEvent action's event). The remaining bytes keep the
    recorded read boundaries: each recorded read becomes one write of what is left of it, so a message
    that was split across two reads is split the same way.
    """
    chunks = transcripts.inbound_chunks(name, conn)
    stream = b"".join(r.data for r in chunks)
    start = len(BANNER) if stream.startswith(BANNER) else 0
    own_ids = transcripts.action_ids(name, conn)
    kept: list[tuple[int, int]] = []
    pos = start
    while (end := stream.find(b"\r\n\r\n", pos)) != -1:
        end += 4
        message = stream[pos:end]
        headers = transcripts.parse_message(message)
        action_id = headers.get("ActionID")
        keep = (message.startswith(b"Event:")
                and headers.get("Event") not in ("FullyBooted", "SuccessfulAuth")
                and (keep_action_events or not (isinstance(action_id, str) and action_id in own_ids)))
        if keep:
            kept.append((pos, end))
        pos = end
    plan = []
    offset = 0
    for record in chunks:
        c_start, c_end = offset, offset + len(record.data)
        offset = c_end
        piece = b"".join(stream[max(c_start, s):min(c_end, e)] for s, e in kept if s < c_end and e > c_start)
        if piece:
            plan.append((record.t, piece))
    return plan


@dataclass(eq=False)
class _Client:
    """One accepted AMI connection (an Asterisk "session")."""

    id: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    logged_in: bool = False
    events: bool = False
    username: str | None = None
    login_epoch: float = 0.0

    @property
    def peer(self) -> tuple[str, int]:
        return self.writer.get_extra_info("peername") or ("127.0.0.1", 0)


class FakeAMI(PeerServer):
    """Asterisk's side of AMI on 127.0.0.1, ephemeral port. Create it with :meth:`start`.

    Settable state (plain data, read at the moment an action is handled):

    * ``queues`` — ``{"queue-name": {"members": [member, …], "params": {…}}}``. A member is a dict
      with ``Interface`` and optionally ``Name`` (defaults to the interface), ``StateInterface``,
      ``Membership`` (``dynamic``), ``Penalty``, ``CallsTaken``, ``LastCall``, ``LastPause``,
      ``LoginTime``, ``InCall``, ``Status`` (``"1"`` = not in use), ``Paused``, ``PausedReason``,
      ``Wrapuptime``, ``Ringinuse``. ``params`` overrides the ``QueueParams`` values. Default: the
      recording's queue ``hotline-12319`` with no members.
    * ``channels`` — list of channel dicts in ``CoreShowChannel`` header names (``Channel``,
      ``CallerIDNum``, ``Context``, …); missing fields get defaults. :meth:`add_channel` helps.
    * ``variables`` — ``{channel name: {variable: value}}``; ``global_variables`` — ``{variable: value}``.
    * ``commands`` — ``{CLI command: [output line, …]}`` for the Command action.
    * ``originate_outcome`` — ``"answered" | "noanswer" | "busy" | "failed"``, or a list of those
      consumed one per Originate; ``originate_delay`` — seconds until the outcome. With ``Async: true``
      the reply is immediate and the ``OriginateResponse`` event follows after the delay; without it
      the session blocks for the delay (as Asterisk's does) and then replies ``Success`` or
      ``Error`` / ``Originate failed``, with no event.
    * ``split`` — ``"chunks"`` (each reply one write), an ``int`` n (pieces of n bytes with
      ``split_pause`` seconds between them) or ``"bytewise"`` (n = 1).
    * ``reply_delay`` — seconds before every reply; ``mute_pings`` — Ping gets no reply at all.
    * ``before_list_complete`` — ``async f(action_name)``, awaited by QueueStatus and CoreShowChannels
      after the list's items were written and before its ``…Complete`` event, which then goes out in a
      write of its own. Events the hook sends arrive inside the list. Not recorded: a real Asterisk
      is believed to write a session's events only between actions, i.e. right after the list; the
      hook stands for something that happened after the list was taken and reaches the client
      before it has applied the list.

    Observations: ``actions`` (every action parsed, in order, as a dict; a repeated key such as
    ``Variable`` maps to a list), ``errors`` (``(action, message)`` for every ``Response: Error``),
    ``unmodelled`` (names of real actions the fake refused), ``sent`` (``(connection number, bytes)``
    per socket write), ``connections`` (accepted), ``logins`` (successful), ``connected`` (open now).
    """

    _label = "FakeAMI"

    def __init__(self, *, secret: str = "hotline-secret", username: str = "hotline", auth_delay: float = 1.0,
                 host: str = "127.0.0.1", port: int = 0, split: str | int = "chunks") -> None:
        super().__init__(host=host, port=port)
        self.username = username
        self.secret = secret
        self.auth_delay = auth_delay
        self.split = split
        self.split_pause = 0.001
        self.reply_delay = 0.0
        self.mute_pings = False
        self.before_list_complete: Callable[[str], Awaitable[None]] | None = None
        self.queues: dict[str, dict[str, Any]] = {"hotline-12319": {"members": []}}
        self.channels: list[dict[str, str]] = []
        self.variables: dict[str, dict[str, str]] = {}
        self.global_variables: dict[str, str] = {}
        self.commands: dict[str, list[str]] = {
            "core show version": [
                "Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-21 05:27:00 UTC",
            ],
        }
        self._originate_outcome: str | list[str] = "answered"
        self.originate_delay = 0.05
        self.actions: list[dict[str, str | list[str]]] = []
        self.errors: list[tuple[dict[str, str | list[str]], str]] = []
        self.unmodelled: list[str] = []
        self.sent: list[tuple[int, bytes]] = []
        self.connections = 0
        self.logins = 0
        self.restarts = 0
        self._clients: set[_Client] = set()
        self._conn_ids = itertools.count(1)
        self._channel_seq = itertools.count(0)
        self._uniqueid_seq = itertools.count(0)
        self._reset_new_connections = False
        self._boot = time.time()

    # --- life cycle ------------------------------------------------------------------------------

    @classmethod
    async def start(cls, secret: str = "hotline-secret", username: str = "hotline", auth_delay: float = 1.0,
                    *, host: str = "127.0.0.1", port: int = 0, split: str | int = "chunks") -> FakeAMI:
        """Create the fake and start listening; ``.port`` is then the real (ephemeral) port."""
        fake = cls(secret=secret, username=username, auth_delay=auth_delay, host=host, port=port, split=split)
        await fake._listen()
        return fake

    async def _listen(self) -> None:
        await super()._listen()
        self._boot = time.time()

    def _open_writers(self) -> list[asyncio.StreamWriter]:
        return [client.writer for client in self._clients]

    @property
    def connected(self) -> int:
        """Connections open right now."""
        return len(self._clients)

    # --- knobs -----------------------------------------------------------------------------------

    @property
    def originate_outcome(self) -> str | list[str]:
        return self._originate_outcome

    @originate_outcome.setter
    def originate_outcome(self, value: str | list[str]) -> None:
        for outcome in ([value] if isinstance(value, str) else value):
            if outcome not in ORIGINATE_OUTCOMES:
                raise ValueError(f"originate_outcome {outcome!r}: use one of {', '.join(ORIGINATE_OUTCOMES)}")
        self._originate_outcome = value if isinstance(value, str) else list(value)

    def _piece_size(self) -> int | None:
        if self.split == "chunks":
            return None
        if self.split == "bytewise":
            return 1
        if isinstance(self.split, int) and not isinstance(self.split, bool) and self.split >= 1:
            return self.split
        raise ValueError(f"split={self.split!r}: use 'chunks', 'bytewise' or a positive int")

    def channel_headers(self, channel: Mapping[str, str]) -> Headers:
        """The headers a channel event starts with (Channel … Linkedid), for :meth:`send_event`."""
        return self._channel_fields(channel)

    def add_channel(self, channel: str, *, variables: Mapping[str, str] | None = None, **fields: str) -> dict[str, str]:
        """Add a live channel (CoreShowChannel header names as keyword arguments) and its variables."""
        uniqueid = fields.pop("Uniqueid", None) or self._new_uniqueid()
        entry = {"Channel": channel, **fields, "Uniqueid": uniqueid}
        entry.setdefault("Linkedid", uniqueid)
        self.channels.append(entry)
        if variables:
            self.variables.setdefault(channel, {}).update(variables)
        return entry

    # --- waiting ---------------------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
        """Wait until ``predicate()`` is true; it is re-checked on every connect, login, action and close."""
        await self._wait(predicate, timeout, what,
                         lambda: f"actions seen: {[_get(a, 'Action') for a in self.actions]}")

    async def wait_action(self, name: str, timeout: float = 5.0, *, count: int = 1,
                          where: Callable[[dict], bool] | None = None) -> dict[str, str | list[str]]:
        """The ``count``-th action named ``name`` (case-insensitive) that satisfies ``where``, once it
        has arrived. Raises ``TimeoutError`` listing the actions seen."""

        def matching() -> list[dict]:
            return [a for a in self.actions
                    if (_get(a, "Action") or "").lower() == name.lower() and (where is None or where(a))]

        await self.wait_until(lambda: len(matching()) >= count, timeout, f"action {name!r} #{count}")
        return matching()[count - 1]

    # --- writing ---------------------------------------------------------------------------------

    async def _write(self, client: _Client, data: bytes) -> None:
        """One logical write to one client, cut per ``split``; never interleaved with another write."""
        size = self._piece_size()
        pieces = [data] if size is None else [data[i:i + size] for i in range(0, len(data), size)]
        async with client.lock:
            for index, piece in enumerate(pieces):
                if index:
                    await asyncio.sleep(self.split_pause)
                if client.writer.is_closing():
                    return
                client.writer.write(piece)
                self.sent.append((client.id, piece))
                try:
                    await client.writer.drain()
                except ConnectionError:
                    return

    def _event_clients(self) -> list[_Client]:
        return sorted((c for c in self._clients if c.logged_in and c.events), key=lambda c: c.id)

    async def _broadcast(self, data: bytes, *, skip: _Client | None = None) -> int:
        clients = [c for c in self._event_clients() if c is not skip]
        for client in clients:
            await self._write(client, data)
        return len(clients)

    def _event(self, name: str, headers: Iterable[tuple[str, str]], privilege: str = "call,all") -> bytes:
        return encode([("Event", name), ("Privilege", privilege), ("Timestamp", _now_ts()), *headers])

    async def push(self, raw: bytes) -> int:
        """Write ``raw`` bytes as they are (garbage, broken framing) to every logged-in client."""
        clients = sorted((c for c in self._clients if c.logged_in), key=lambda c: c.id)
        for client in clients:
            await self._write(client, raw)
        return len(clients)

    async def send_event(self, name: str, headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
                         *, privilege: str = "call,all") -> bytes:
        """Emit one event (``Event``, ``Privilege``, ``Timestamp``, then ``headers`` in order) to every
        logged-in client with events on; returns the bytes sent."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        data = self._event(name, pairs, privilege)
        await self._broadcast(data)
        return data

    async def play(self, name: str, conn: int = 1, *, realtime: bool = False,
                   keep_action_events: bool = False) -> list[bytes]:
        """Replay the events of a recorded transcript to every logged-in client with events on.

        See :func:`replay_plan` for what is kept; each recorded read is one write (then cut further
        by ``split``). ``realtime=True`` keeps the recorded gaps between reads; otherwise it sends as
        fast as possible. Returns the complete messages sent, in order.
        """
        plan = replay_plan(name, conn, keep_action_events=keep_action_events)
        loop = asyncio.get_running_loop()
        started = loop.time()
        t0 = plan[0][0] if plan else 0.0
        for t, chunk in plan:
            if realtime:
                delay = started + (t - t0) - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self._broadcast(chunk)
        messages, _ = transcripts.split_messages(b"".join(chunk for _, chunk in plan))
        return messages

    async def drop(self, *, reset: bool = False) -> int:
        """Close every client connection abruptly (``transport.abort()``; with ``reset=True`` the peer
        gets a TCP RST instead of a FIN). The server keeps listening. Returns how many were dropped."""
        clients = list(self._clients)
        for client in clients:
            self._abort(client, reset=reset)
        return len(clients)

    @staticmethod
    def _abort(client: _Client, *, reset: bool) -> None:
        sock = client.writer.get_extra_info("socket")
        if reset and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.writer.transport.abort()

    async def restart(self, down_seconds: float = 0.4, *, restart: bool = True, reset_window: float = 0.0) -> None:
        """Do what ``core restart now`` (``restart=True``) or ``core stop now`` looked like from AMI.

        Logged-in clients get ``Event: Shutdown`` / ``Shutdown: Cleanly`` / ``Restart: True|False``;
        about 15 ms later every connection is closed. For ``reset_window`` seconds new connections are
        accepted and immediately reset with no banner (the recording's first reconnect); then the
        listener is closed, connects are refused for ``down_seconds``, and the fake listens again on
        the SAME port. Queue and channel state is kept.
        """
        shutdown = [("Shutdown", "Cleanly"), ("Restart", "True" if restart else "False")]
        await self._broadcast(self._event("Shutdown", shutdown, "system,all"))
        await asyncio.sleep(0.015)
        self._reset_new_connections = reset_window > 0
        for client in list(self._clients):
            client.writer.close()
        if reset_window > 0:
            await asyncio.sleep(reset_window)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._reset_new_connections = False
        self._notify()
        await asyncio.sleep(down_seconds)
        await self._listen()
        self.restarts += 1
        self._notify()

    # --- the session ------------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track_current_task()
        client = _Client(next(self._conn_ids), reader, writer)
        self.connections += 1
        if self._reset_new_connections:
            self._abort(client, reset=True)
            self._notify()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._clients.add(client)
        self._notify()
        # a client that went away, or stop() (asyncio's stream callback would log a cancelled handler),
        # ends the session quietly
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                await self._write(client, BANNER)
                while True:
                    action = await self._read_action(reader)
                    if action is None:
                        break
                    self.actions.append(action)
                    self._notify()
                    if not await self._dispatch(client, action):
                        break
        finally:
            self._clients.discard(client)
            if not writer.is_closing():
                writer.close()
            self._notify()

    @staticmethod
    async def _read_action(reader: asyncio.StreamReader) -> dict[str, str | list[str]] | None:
        """One client message: header lines up to an empty line. ``None`` at EOF."""
        lines: list[bytes] = []
        while True:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                return None  # EOF, possibly in the middle of a message
            line = line[:-1].removesuffix(b"\r")
            if line:
                lines.append(line)
            elif lines:
                return transcripts.parse_message(b"\r\n".join(lines))

    def _reply_bytes(self, action: Mapping[str, Any], headers: Headers) -> bytes:
        """A response: ``headers[0]`` (Response), then ActionID if the action had one, then the rest."""
        action_id = _get(action, "ActionID")
        ordered = headers[:1] + ([("ActionID", action_id)] if action_id is not None else []) + headers[1:]
        return encode(ordered)

    async def _reply(self, client: _Client, action: Mapping[str, Any], headers: Headers, *, extra: bytes = b"") -> None:
        if headers[0] == ("Response", "Error"):
            message = next((v for k, v in headers if k == "Message"), "")
            self.errors.append((dict(action), message))
        await self._write(client, self._reply_bytes(action, headers) + extra)

    async def _error(self, client: _Client, action: Mapping[str, Any], message: str) -> None:
        await self._reply(client, action, [("Response", "Error"), ("Message", message)])

    async def _success(self, client: _Client, action: Mapping[str, Any], message: str | None = None) -> None:
        await self._reply(client, action, [("Response", "Success")] + ([("Message", message)] if message else []))

    async def _dispatch(self, client: _Client, action: dict[str, Any]) -> bool:
        """Handle one action; ``False`` means the session is over (Logoff, failed Login)."""
        name = _get(action, "Action")
        if not name:
            await self._error(client, action, "Missing action in request")
            return True
        key = name.strip().lower()
        if not client.logged_in and key not in ("login", "logoff", "challenge"):
            await self._error(client, action, "Permission denied")
            return True
        if self.reply_delay and key != "login":
            await asyncio.sleep(self.reply_delay)
        handler = getattr(self, f"_act_{key}", None)
        if handler is None:
            if key in _UNMODELLED:
                self.unmodelled.append(name)
                await self._error(client, action, f"FakeAMI does not model action {name}")
            else:
                await self._error(client, action, f"Invalid/unknown command: {name}. "
                                                  "Use Action: ListCommands to show available commands.")
                await self._broadcast(self._security_event(client, "RequestBadFormat", "Error",
                                                           [("RequestType", f"Action: {name}")]), skip=None)
            return True
        result = await handler(client, action)
        return result is not False

    def _security_event(self, client: _Client, name: str, severity: str, extra: Headers) -> bytes:
        now = time.time()
        host, port = client.peer[:2]
        headers = [("EventTV", _tv(now)), ("Severity", severity), ("Service", "AMI"), ("EventVersion", "1")]
        tail = [("SessionID", f"0x{client.id + 0x7FD020001460:x}"),
                ("LocalAddress", f"IPV4/TCP/{self.host}/{self.port}"), ("RemoteAddress", f"IPV4/TCP/{host}/{port}")]
        if name == "SuccessfulAuth":
            headers += [("AccountID", client.username or ""), *tail, ("UsingPassword", "0"),
                        ("SessionTV", _tv(client.login_epoch))]
        else:
            headers += [*tail, *extra, ("SessionTV", _tv(client.login_epoch or now)),
                        ("AccountID", client.username or "")]
        return self._event(name, headers, "security,all")

    # --- actions: session -------------------------------------------------------------------------

    async def _act_login(self, client: _Client, action: Mapping[str, Any]) -> bool:
        if client.logged_in:
            await self._success(client, action, "Already authenticated")
            return True
        username, secret = _get(action, "Username"), _get(action, "Secret")
        if username != self.username or secret != self.secret:
            await asyncio.sleep(self.auth_delay)  # Asterisk sleeps ~1 s before refusing
            await self._error(client, action, "Authentication failed")
            return False
        client.logged_in, client.username, client.login_epoch = True, username, time.time()
        client.events = (_get(action, "Events") or "on").strip().lower() not in ("off", "no", "false", "0")
        self.logins += 1
        self._notify()
        extra = b""
        auth_event = self._security_event(client, "SuccessfulAuth", "Informational", [])
        if client.events:
            uptime = str(int(time.time() - self._boot))
            # As recorded: FullyBooted without Timestamp, in the same write as the reply.
            extra = encode([("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", uptime),
                            ("LastReload", uptime), ("Status", "Fully Booted")]) + auth_event
        await self._reply(client, action, [("Response", "Success"), ("Message", "Authentication accepted")],
                          extra=extra)
        await self._broadcast(auth_event, skip=client)
        return True

    async def _act_logoff(self, client: _Client, action: Mapping[str, Any]) -> bool:
        await self._reply(client, action, [("Response", "Goodbye"), ("Message", "Thanks for all the fish.")])
        return False

    async def _act_ping(self, client: _Client, action: Mapping[str, Any]) -> None:
        if self.mute_pings:
            return
        await self._reply(client, action, [("Response", "Success"), ("Ping", "Pong"), ("Timestamp", _now_ts())])

    async def _act_userevent(self, client: _Client, action: Mapping[str, Any]) -> None:
        name = _get(action, "UserEvent")
        if not name:
            await self._error(client, action, "Missing UserEvent")  # not recorded; from manager.c
            return
        await self._success(client, action, "Event Sent")
        headers: Headers = [("UserEvent", name)]
        action_id = _get(action, "ActionID")
        if action_id is not None:
            headers.append(("ActionID", action_id))
        for key, value in action.items():
            if key.lower() in ("action", "actionid", "userevent"):
                continue
            headers += [(key, v) for v in (value if isinstance(value, list) else [value])]
        await self._broadcast(self._event("UserEvent", headers, "user,all"))

    # --- actions: queues ---------------------------------------------------------------------------

    @staticmethod
    def _member(member: Mapping[str, str]) -> dict[str, str]:
        """A member with every field app_queue reports, defaults filled in."""
        interface = member.get("Interface") or member.get("Location") or ""
        full = {"Name": member.get("Name") or member.get("MemberName") or interface, "Interface": interface,
                "StateInterface": interface, "Membership": "dynamic", "Penalty": "0", "CallsTaken": "0",
                "LastCall": "0", "LastPause": "0", "LoginTime": "0", "InCall": "0", "Status": "1", "Paused": "0",
                "PausedReason": "", "Ringinuse": "0", "Wrapuptime": "0"}
        full.update({k: str(v) for k, v in member.items() if k not in ("Location", "MemberName")})
        full["Interface"] = interface
        return full

    @staticmethod
    def _find_member(queue: Mapping[str, Any], interface: str) -> dict[str, str] | None:
        for member in queue.get("members", []):
            if (member.get("Interface") or member.get("Location") or "").lower() == interface.lower():
                return member
        return None

    def _member_event(self, name: str, queue_name: str, member: Mapping[str, str]) -> bytes:
        m = self._member(member)
        return self._event(name, [("Queue", queue_name), ("MemberName", m["Name"]), ("Interface", m["Interface"]),
                                  *[(k, m[k]) for k in ("StateInterface", "Membership", "Penalty", "CallsTaken",
                                                        "LastCall", "LastPause", "LoginTime", "InCall", "Status",
                                                        "Paused", "PausedReason", "Ringinuse", "Wrapuptime")]],
                           "agent,all")

    def _device_state(self, device: str, state: str) -> bytes:
        return self._event("DeviceStateChange", [("Device", device), ("State", state)])

    def _avail_state(self, queue_name: str) -> bytes:
        members = [self._member(m) for m in self.queues[queue_name].get("members", [])]
        available = any(m["Paused"] == "0" and m["Status"] == "1" for m in members)
        return self._device_state(f"Queue:{queue_name}_avail", "NOT_INUSE" if available else "INUSE")

    def _queue_params(self, queue_name: str, queue: Mapping[str, Any]) -> Headers:
        params = {"Max": "0", "Strategy": "ringall", "Calls": "0", "Holdtime": "0", "TalkTime": "0",
                  "Completed": "0", "Abandoned": "0", "ServiceLevel": "0", "ServicelevelPerf": "0.0",
                  "ServicelevelPerf2": "0.0", "Weight": "0"}
        params.update({k: str(v) for k, v in queue.get("params", {}).items()})
        return [("Queue", queue_name), *params.items()]

    async def _act_queuestatus(self, client: _Client, action: Mapping[str, Any]) -> None:
        wanted_queue, wanted_member = _get(action, "Queue"), _get(action, "Member")
        action_id = _get(action, "ActionID")
        tail = [("ActionID", action_id)] if action_id is not None else []
        out = self._reply_bytes(action, [("Response", "Success"), ("EventList", "start"),
                                         ("Message", "Queue status will follow")])
        items = 0
        for queue_name, queue in self.queues.items():
            if wanted_queue and wanted_queue != queue_name:
                continue
            out += encode([("Event", "QueueParams"), *self._queue_params(queue_name, queue), *tail])
            items += 1
            for member in queue.get("members", []):
                m = self._member(member)
                if wanted_member and wanted_member.lower() not in (m["Interface"].lower(), m["Name"].lower()):
                    continue
                out += encode([("Event", "QueueMember"), ("Queue", queue_name), ("Name", m["Name"]),
                               ("Location", m["Interface"]),
                               *[(k, m[k]) for k in ("StateInterface", "Membership", "Penalty", "CallsTaken",
                                                     "LastCall", "LastPause", "LoginTime", "InCall", "Status",
                                                     "Paused", "PausedReason", "Wrapuptime")], *tail])
                items += 1
        out = await self._before_complete(client, "QueueStatus", out)
        out += encode([("Event", "QueueStatusComplete"), *tail, ("EventList", "Complete"), ("ListItems", str(items))])
        await self._write(client, out)

    async def _act_queuesummary(self, client: _Client, action: Mapping[str, Any]) -> None:
        wanted_queue = _get(action, "Queue")
        action_id = _get(action, "ActionID")
        tail = [("ActionID", action_id)] if action_id is not None else []
        out = self._reply_bytes(action, [("Response", "Success"), ("EventList", "start"),
                                         ("Message", "Queue summary will follow")])
        items = 0
        for queue_name, queue in self.queues.items():
            if wanted_queue and wanted_queue != queue_name:
                continue
            members = [self._member(m) for m in queue.get("members", [])]
            logged_in = [m for m in members if m["Status"] not in ("5", "4")]  # not UNAVAILABLE / INVALID
            available = [m for m in logged_in if m["Paused"] == "0" and m["Status"] == "1" and m["InCall"] == "0"]
            out += encode([("Event", "QueueSummary"), ("Queue", queue_name), ("LoggedIn", str(len(logged_in))),
                           ("Available", str(len(available))), ("Callers", "0"), ("HoldTime", "0"),
                           ("TalkTime", "0"), ("LongestHoldTime", "0"), *tail])
            items += 1
        out += encode([("Event", "QueueSummaryComplete"), *tail, ("EventList", "Complete"), ("ListItems", str(items))])
        await self._write(client, out)

    async def _act_queueadd(self, client: _Client, action: Mapping[str, Any]) -> None:
        queue_name, interface = _get(action, "Queue"), _get(action, "Interface")
        if not queue_name or not interface:
            await self._error(client, action, "'Queue' and 'Interface' must be specified.")  # from app_queue.c
            return
        queue = self.queues.get(queue_name)
        if queue is None:
            await self._error(client, action, "Unable to add interface to queue: No such queue")
            return
        if self._find_member(queue, interface) is not None:
            await self._error(client, action, "Unable to add interface: Already there")
            return
        paused = _true(_get(action, "Paused"))
        member = {"Interface": interface, "Name": _get(action, "MemberName") or interface,
                  "StateInterface": _get(action, "StateInterface") or interface, "Membership": "dynamic",
                  "Penalty": _get(action, "Penalty") or "0", "CallsTaken": "0", "LastCall": "0", "LastPause": "0",
                  "LoginTime": str(int(time.time())), "InCall": "0", "Status": "1", "Paused": "1" if paused else "0",
                  "PausedReason": (_get(action, "Reason") or "") if paused else "", "Ringinuse": "0",
                  "Wrapuptime": "0"}
        queue.setdefault("members", []).append(member)
        await self._success(client, action, "Added interface to queue")
        pause_state = self._device_state(f"Queue:{queue_name}_pause_{interface}", "INUSE" if paused else "NOT_INUSE")
        await self._broadcast(pause_state + self._member_event("QueueMemberAdded", queue_name, member)
                              + self._avail_state(queue_name))

    async def _act_queueremove(self, client: _Client, action: Mapping[str, Any]) -> None:
        queue_name, interface = _get(action, "Queue"), _get(action, "Interface")
        if not queue_name or not interface:
            await self._error(client, action, "Need 'Queue' and 'Interface' parameters.")  # from app_queue.c
            return
        queue = self.queues.get(queue_name)
        if queue is None:
            await self._error(client, action, "Unable to remove interface from queue: No such queue")
            return
        member = self._find_member(queue, interface)
        if member is None:
            await self._error(client, action, "Unable to remove interface: Not there")
            return
        if self._member(member)["Membership"] != "dynamic":
            await self._error(client, action, "Unable to remove interface: Not dynamic")  # from app_queue.c
            return
        queue["members"].remove(member)
        await self._success(client, action, "Removed interface from queue")
        await self._broadcast(self._member_event("QueueMemberRemoved", queue_name, member)
                              + self._avail_state(queue_name))

    async def _act_queuepause(self, client: _Client, action: Mapping[str, Any]) -> None:
        interface, paused_text = _get(action, "Interface"), _get(action, "Paused")
        if not interface or not paused_text:
            await self._error(client, action, "Need 'Interface' and 'Paused' parameters.")  # from app_queue.c
            return
        paused = _true(paused_text)
        wanted_queue = _get(action, "Queue")
        reason = _get(action, "Reason") or ""
        touched = []
        for queue_name, queue in self.queues.items():
            if wanted_queue and wanted_queue != queue_name:
                continue
            member = self._find_member(queue, interface)
            if member is not None:
                touched.append((queue_name, member))
        if not touched:
            await self._error(client, action, "Interface not found")  # from app_queue.c, not recorded
            return
        events = b""
        for queue_name, member in touched:
            member["Paused"] = "1" if paused else "0"
            member["PausedReason"] = reason
            if paused:
                member["LastPause"] = str(int(time.time()))
            events += (self._device_state(f"Queue:{queue_name}_pause_{self._member(member)['Interface']}",
                                          "INUSE" if paused else "NOT_INUSE")
                       + self._avail_state(queue_name) + self._member_event("QueueMemberPause", queue_name, member))
        await self._success(client, action,
                            "Interface paused successfully" if paused else "Interface unpaused successfully")
        await self._broadcast(events)

    # --- actions: channels ------------------------------------------------------------------------

    def _new_uniqueid(self) -> str:
        return f"{int(self._boot)}.{next(self._uniqueid_seq)}"

    def _channel(self, name: str | None) -> dict[str, str] | None:
        return next((c for c in self.channels if c.get("Channel") == name), None) if name else None

    @staticmethod
    def _channel_fields(channel: Mapping[str, str]) -> Headers:
        """The standard channel snapshot headers (Channel … Linkedid), with Asterisk's defaults."""
        uniqueid = channel.get("Uniqueid", "")
        defaults = {"Channel": "", "ChannelState": "6", "ChannelStateDesc": "Up", "CallerIDNum": "<unknown>",
                    "CallerIDName": "<unknown>", "ConnectedLineNum": "<unknown>", "ConnectedLineName": "<unknown>",
                    "Language": "en", "AccountCode": "", "Context": "default", "Exten": "s", "Priority": "1",
                    "Uniqueid": uniqueid, "Linkedid": channel.get("Linkedid", uniqueid)}
        return [(k, str(channel.get(k, v))) for k, v in defaults.items()]

    async def _act_coreshowchannels(self, client: _Client, action: Mapping[str, Any]) -> None:
        action_id = _get(action, "ActionID")
        head = [("ActionID", action_id)] if action_id is not None else []
        # Recorded as two reads: the reply, then the items and the Complete event.
        await self._write(client, self._reply_bytes(action, [("Response", "Success"), ("EventList", "start"),
                                                             ("Message", "Channels will follow")]))
        out = b""
        standard = {k for k, _ in self._channel_fields({})} | {"Application", "ApplicationData", "Duration", "BridgeId"}
        for channel in self.channels:
            out += encode([("Event", "CoreShowChannel"), *head, *self._channel_fields(channel),
                           ("Application", str(channel.get("Application", ""))),
                           ("ApplicationData", str(channel.get("ApplicationData", ""))),
                           ("Duration", str(channel.get("Duration", "00:00:00"))),
                           ("BridgeId", str(channel.get("BridgeId", ""))),
                           *[(k, str(v)) for k, v in channel.items() if k not in standard]])
        listed = len(self.channels)   # the hook may take a channel away (it hung up after being listed)
        out = await self._before_complete(client, "CoreShowChannels", out)
        out += encode([("Event", "CoreShowChannelsComplete"), *head, ("EventList", "Complete"),
                       ("ListItems", str(listed))])
        await self._write(client, out)

    async def _before_complete(self, client: _Client, action_name: str, out: bytes) -> bytes:
        """With ``before_list_complete`` set: write the list so far, run the hook, and return b"" for the
        Complete event to follow alone; otherwise return ``out`` unchanged (the recorded single write)."""
        if self.before_list_complete is None:
            return out
        await self._write(client, out)
        await self.before_list_complete(action_name)
        return b""

    async def _act_redirect(self, client: _Client, action: Mapping[str, Any]) -> None:
        name = _get(action, "Channel")
        if not name:
            await self._error(client, action, "Channel not specified")  # from manager.c
            return
        channel = self._channel(name)
        if channel is None:
            await self._error(client, action, f"Channel does not exist: {name}")
            return
        for key in ("Context", "Exten", "Priority"):
            value = _get(action, key)
            if value:
                channel[key] = value
        await self._success(client, action, "Redirect successful")

    def _lookup(self, channel: Mapping[str, str] | None, variable: str) -> str:
        if channel is None:
            return self.global_variables.get(variable, "")
        functions = {"CALLERID(num)": "CallerIDNum", "CALLERID(name)": "CallerIDName", "CHANNEL": "Channel",
                     "UNIQUEID": "Uniqueid"}
        if variable in functions:
            return str(channel.get(functions[variable], ""))
        return self.variables.get(channel["Channel"], {}).get(variable, "")

    async def _act_getvar(self, client: _Client, action: Mapping[str, Any]) -> None:
        variable, name = _get(action, "Variable"), _get(action, "Channel")
        if not variable:
            await self._error(client, action, "No variable specified")  # from manager.c
            return
        channel = self._channel(name)
        if name and channel is None:
            await self._error(client, action, "No such channel")
            return
        await self._reply(client, action, [("Response", "Success"), ("Variable", variable),
                                           ("Value", self._lookup(channel, variable))])

    async def _act_setvar(self, client: _Client, action: Mapping[str, Any]) -> None:
        variable, name, value = _get(action, "Variable"), _get(action, "Channel"), _get(action, "Value") or ""
        if not variable:
            await self._error(client, action, "No variable specified")  # from manager.c
            return
        channel = self._channel(name)
        if name and channel is None:
            await self._error(client, action, "No such channel")  # from manager.c
            return
        if channel is None:
            self.global_variables[variable] = value
            event = self._event("VarSet", [("Channel", "none"), ("Uniqueid", "none"), ("Variable", variable),
                                           ("Value", value)], "dialplan,all")
        else:
            fields = {"CALLERID(num)": "CallerIDNum", "CALLERID(name)": "CallerIDName"}
            if variable in fields:
                channel[fields[variable]] = value
            else:
                self.variables.setdefault(channel["Channel"], {})[variable] = value
            event = self._event("VarSet", [*self._channel_fields(channel), ("Variable", variable), ("Value", value)],
                                "dialplan,all")
        await self._success(client, action, "Variable Set")
        await self._broadcast(event)

    async def _act_mixmonitor(self, client: _Client, action: Mapping[str, Any]) -> None:
        if self._channel(_get(action, "Channel")) is None:
            await self._error(client, action, "No such channel")  # from app_mixmonitor.c, not recorded
            return
        await self._success(client, action)  # recorded: a bare Response: Success + ActionID

    async def _act_stopmixmonitor(self, client: _Client, action: Mapping[str, Any]) -> None:
        await self._act_mixmonitor(client, action)

    async def _act_command(self, client: _Client, action: Mapping[str, Any]) -> None:
        command = (_get(action, "Command") or "").strip()
        lines = self.commands.get(command)
        if lines is None:
            words = command.split()
            await self._reply(client, action, [
                ("Response", "Error"), ("Message", "Command output follows"),
                ("Output", (f"No such command '{command}' (type 'core show help {' '.join(words[:2])}' "
                            "for other possible commands)"))])
            return
        await self._reply(client, action, [("Response", "Success"), ("Message", "Command output follows"),
                                           *[("Output", line) for line in lines]])

    # --- actions: Originate ------------------------------------------------------------------------

    def _next_outcome(self) -> str:
        outcome = self._originate_outcome
        if isinstance(outcome, str):
            return outcome
        return outcome.pop(0) if outcome else "answered"

    async def _act_originate(self, client: _Client, action: Mapping[str, Any]) -> None:
        dial = _get(action, "Channel")
        if not dial:
            await self._error(client, action, "Channel not specified")  # from manager.c
            return
        outcome = self._next_outcome()
        if not _true(_get(action, "Async")):
            await asyncio.sleep(self.originate_delay)  # a synchronous Originate blocks the session
            if outcome == "answered":
                await self._success(client, action, "Originate successfully queued")
            else:
                await self._error(client, action, "Originate failed")  # and no OriginateResponse event
            return
        await self._success(client, action, "Originate successfully queued")
        self._spawn(self._originate_response(dict(action), dial, outcome))

    async def _originate_response(self, action: Mapping[str, Any], dial: str, outcome: str) -> None:
        await asyncio.sleep(self.originate_delay)
        headers: Headers = []
        action_id = _get(action, "ActionID")
        if action_id is not None:
            headers.append(("ActionID", action_id))
        if outcome == "answered":
            seq = next(self._channel_seq)
            channel = f"{dial}-{seq:08x};1" if dial.lower().startswith("local/") else f"{dial}-{seq:08x}"
            uniqueid = self._new_uniqueid()
            if dial.lower().startswith("local/"):
                next(self._uniqueid_seq)  # the ;2 leg takes the next uniqueid
            num, name = _parse_callerid(_get(action, "CallerID"))
            headers.append(("Response", "Success"))
        else:
            channel, uniqueid, num, name = dial, "<unknown>", "<unknown>", "<unknown>"
            headers.append(("Response", "Failure"))
        headers.append(("Channel", channel))
        application = _get(action, "Application")
        if application:
            headers += [("Application", application), ("Data", _get(action, "Data") or "")]
        else:
            headers += [("Context", _get(action, "Context") or ""), ("Exten", _get(action, "Exten") or "")]
        headers += [("Reason", _ORIGINATE_REASON[outcome]), ("Uniqueid", uniqueid), ("CallerIDNum", num),
                    ("CallerIDName", name)]
        await self._broadcast(self._event("OriginateResponse", headers))
