"""The AMI client: panoramisk's Manager and protocol, with the defects of panoramisk 1.4 fixed.

1. Framing works on bytes: messages are cut at `\\r\\n\\r\\n` in a byte buffer and decoded only
   when complete, so a UTF-8 character split across two TCP reads arrives whole (panoramisk
   decodes each read with errors='ignore' and silently drops it: 张三城管 → 三城管).
2. (FastAGI: see ivr/agi.py.)
3. (FastAGI: see ivr/agi.py.)
4. Every event handler runs isolated: one that raises is logged, and the rest of the read's
   events are still delivered (panoramisk lets the exception close the connection).
5. Nothing fires late: panoramisk replays actions queued during a disconnect after the next
   login. Here an action sent while the link is down fails at once with `AMINotConnected`,
   and one in flight when the link drops fails with `AMIDisconnected` — except agent-state
   actions (QueuePause/QueueAdd/QueueRemove), whose latest wish per (queue, interface) is kept
   and applied after reconnect, because the agent's desired state outlives the link. An
   Originate is never replayed: a citizen must not be called twice.

Also: the login reply is checked (a wrong secret is reported as such), event names are
matched case-sensitively, a Ping with a timeout detects a dead link, reconnects back off,
and after every login the state is rebuilt from QueueStatus and CoreShowChannels because
AMI does not replay what happened while we were away; the events that arrive while those
lists are fetched are applied after them.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from panoramisk import actions as pa_actions
from panoramisk.ami_protocol import AMIProtocol as PanoramiskProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from hotline.bus import EventBus
from hotline.settings import Settings
from ivr.ami_state import CallCentreState, Notice, known

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/"
MAX_MESSAGE_BYTES = 1 << 20       # a CoreShowChannels item is ~1 KiB; anything this big is garbage
REPLAYABLE = {"queuepause", "queueadd", "queueremove"}
ORIGINATE_REASONS = {"0": "failed", "1": "hung_up", "3": "no_answer", "4": "answered", "5": "busy", "8": "congestion"}


class AMIError(Exception):
    """An AMI action failed or could not be sent."""


class AMINotConnected(AMIError):
    """The link to Asterisk is down; nothing was sent."""


class AMIDisconnected(AMIError):
    """The link dropped after the action was sent; its outcome is unknown."""


class AMIAuthError(AMIError):
    """Asterisk refused the login (wrong username or secret, or not permitted from here)."""


class AMIMessage(Message):
    """panoramisk's Message with a dict-speed get(): the MutableMapping mixin's get() raises and
    catches KeyError for every missing header (ActionID on every event)."""

    def get(self, key: str, default: Any = None) -> Any:
        item = self._store.get(key.lower())
        return default if item is None else item[1]


def parse_message(raw: bytes) -> Message | None:
    """One complete AMI message (without its blank line) → Message; None if it is neither an
    Event nor a Response. Repeated headers become lists (Output:, Variable:)."""
    parts = [line.partition(":") for line in raw.decode("utf-8", "replace").split("\r\n")]
    # fast path: every line is "Key: value" and no key repeats (nearly every event)
    store = {k.lower(): (k, v[1:] if v[:1] == " " else v) for k, sep, v in parts if sep and k}
    if len(store) != len(parts) or "content" in store:
        store = _headers_slowly(parts)
    if "event" not in store and "response" not in store:
        return None
    store["content"] = ("content", "")   # panoramisk's Message keeps a (here empty) body under this key
    message = AMIMessage.__new__(AMIMessage)
    message._store = store
    message.manager = None
    return message


def _headers_slowly(parts: list[tuple[str, str, str]]) -> dict[str, tuple[str, Any]]:
    store: dict[str, tuple[str, Any]] = {}
    for key, sep, value in parts:
        if not sep or not key or key.lower() == "content":
            continue
        value = value[1:] if value.startswith(" ") else value
        low = key.lower()
        if low in store:
            old = store[low][1]
            store[low] = (key, (old if isinstance(old, list) else [old]) + [value])
        else:
            store[low] = (key, value)
    return store


class HotlineAction(pa_actions.Action):
    """An action whose completion is decided by what Asterisk 22 actually sends."""

    @property
    def multi(self) -> bool:
        first = self.responses[0]
        if first.get("EventList", "").lower() == "start":
            return True
        return (self.get("Action", "").lower() == "originate" and str(self.get("Async", "")).lower() == "true"
                and first.get("Response") == "Success")

    @property
    def completed(self) -> bool:
        last = self.responses[-1]
        if len(self.responses) == 1:
            return not self.multi
        event = last.get("Event", "")
        return event.endswith("Complete") or event == "OriginateResponse"

    def add_message(self, message: Message) -> bool:
        self.responses.append(message)
        if not self.completed:
            return False
        if not self.future.done():
            self.future.set_result(self.responses if self.multi else self.responses[0])
        return True


class AMIProtocol(PanoramiskProtocol):
    """Byte-buffered framing; events and replies handed to the client."""

    def __init__(self, client: "AMIClient | None" = None) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.buffer = bytearray()
        self.banner_seen = False

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.banner_seen and not self._banner():
            return
        messages = []
        buffer, start = self.buffer, 0
        while True:   # cut complete messages by offset; one trim of the buffer at the end
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                break
            raw = bytes(buffer[start:end])
            start = end + 4
            message = parse_message(raw)
            if message is None:
                if raw.strip():
                    log.warning("AMI: skipped a block that is neither event nor response: %r", raw[:200])
                continue
            messages.append(message)
        del buffer[:start]
        if len(self.buffer) > MAX_MESSAGE_BYTES:
            log.error("AMI: %d bytes without a message end; dropping the link", len(self.buffer))
            self.buffer.clear()
            self.transport.close()
        if messages and self.client is not None:
            self.client.received(messages)

    def _banner(self) -> bool:
        end = self.buffer.find(b"\r\n")
        if end < 0:
            if len(self.buffer) > 200:
                log.error("AMI: no banner; this is not Asterisk's manager port")
                self.transport.close()
            return False
        line = bytes(self.buffer[:end])
        del self.buffer[:end + 2]
        if not line.startswith(BANNER):
            log.error("AMI: unexpected banner %r; not Asterisk's manager port", line[:80])
            self.transport.close()
            return False
        self.version = line[len(BANNER):].decode("ascii", "replace").strip()
        self.banner_seen = True
        banner = self.client.banner if self.client is not None else None
        if banner is not None and not banner.done():
            banner.set_result(self.version)
        return True

    def send(self, data: Any, as_list: bool = False) -> asyncio.Future:
        action = data if isinstance(data, HotlineAction) else HotlineAction(data)
        self.responses[action.id] = action
        self.transport.write(str(action).encode("utf-8"))
        return action.future

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        for action in list(self.responses.values()):
            if not action.future.done():
                action.future.set_exception(AMIDisconnected(f"{action.get('Action')}: link lost before the reply"))
        self.responses.clear()
        if self.client is not None:
            self.client.lost(exc)


@dataclass
class OriginateResult:
    action_id: str
    outcome: str            # answered | no_answer | busy | failed | …
    reason: str
    channel: str | None
    uniqueid: str | None

    @property
    def answered(self) -> bool:
        return self.outcome == "answered"


Listener = Callable[[Message], Awaitable[None] | None]


class AMIClient(Manager):
    """Keeps one AMI link up, folds events into `state`, publishes what matters on the bus."""

    def __init__(self, host: str, port: int, username: str, secret: str, *, bus: EventBus | None = None,
                 state: CallCentreState | None = None, ping_seconds: float = 10.0, ping_timeout: float = 5.0,
                 reconnect_max: float = 30.0, action_timeout: float = 10.0) -> None:
        super().__init__(host=host, port=port, username=username, secret=secret, events="on",
                         ping_delay=ping_seconds, ping_interval=ping_seconds, protocol_factory=AMIProtocol)
        # panoramisk registers a FullyBooted listener that replays queued actions: not here
        self.callbacks.clear()
        self.patterns.clear()
        self.bus = bus
        self.state = state or CallCentreState()
        self.ping_seconds, self.ping_timeout = ping_seconds, ping_timeout
        self.reconnect_max, self.action_timeout = reconnect_max, action_timeout
        self.status = "starting"         # connected | reconnecting | unreachable | auth_failed | stopped
        self.last_error = ""
        self.connects = 0
        self.handler_errors = 0
        self.protocol: AMIProtocol | None = None
        self._replay: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._lost: asyncio.Event | None = None
        self._stop_requested: asyncio.Event | None = None
        self._stopping = False
        self._pending_notices: list[Notice] = []
        self._publisher: asyncio.Task | None = None
        self.banner: asyncio.Future | None = None

    @classmethod
    def from_settings(cls, settings: "Settings", *, bus: EventBus | None = None,
                      state: CallCentreState | None = None) -> "AMIClient":
        """The product's AMI link to its Asterisk as the settings describe it: the one place it is made
        (the live link of `Telephony` and the satisfaction callbacks' link alike)."""
        return cls(settings.ami_host, settings.ami_port, settings.ami_username, settings.ami_secret, bus=bus,
                   state=state, ping_seconds=settings.ami_ping_seconds, ping_timeout=settings.ami_ping_timeout_seconds,
                   reconnect_max=settings.ami_reconnect_max_seconds)

    # ---------------------------------------------------------------------------- link
    async def run(self) -> None:
        """Connect, log in, resync, and stay up; back off and retry while Asterisk is away."""
        delay = 0.5
        self._stop_requested = asyncio.Event()
        while not self._stopping:
            try:
                await self.connect_once()
                delay = 0.5
                await self._stay_up()
                if not self._stopping:
                    self._set_status("reconnecting", "the link to Asterisk was lost")
            except AMIAuthError as exc:
                self._set_status("auth_failed", str(exc))
                delay = self.reconnect_max  # retrying a wrong secret fast only fills Asterisk's log
            except (OSError, asyncio.TimeoutError, AMIError) as exc:
                self._set_status("unreachable", f"{type(exc).__name__}: {exc}")
            finally:
                self._drop()
            if self._stopping:
                break
            try:  # back off, but wake at once for stop()
                await asyncio.wait_for(self._stop_requested.wait(), delay * (0.8 + 0.4 * random.random()))
            except asyncio.TimeoutError:
                delay = min(delay * 2, self.reconnect_max)
        self._set_status("stopped", "")

    async def connect_once(self, resync: bool = True) -> None:
        """One connection and login (raises on failure); `run` wraps it with retries."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.banner = loop.create_future()
        self._lost = asyncio.Event()
        transport, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: AMIProtocol(self), self.config["host"], self.config["port"]),
            self.action_timeout)
        protocol.factory = self
        self.protocol = protocol
        await asyncio.wait_for(asyncio.shield(self.banner), self.action_timeout)
        reply = await self.send({"Action": "Login", "Username": self.config["username"],
                                 "Secret": self.config["secret"], "Events": "on"}, timeout=self.action_timeout + 5)
        if reply.get("Response") != "Success":
            raise AMIAuthError(f"AMI login as {self.config['username']!r} refused: {reply.get('Message', '')}")
        self.authenticated = True
        self.connects += 1
        if resync:
            await self.resync()
            await self._apply_replay()
            log.info("AMI logged in (connect #%d, Asterisk Call Manager/%s); resynced %d queues, %d live calls",
                     self.connects, self.banner.result(), len(self.state.queues), len(self.state.calls))
        self._set_status("connected", "")

    async def _stay_up(self) -> None:
        """Ping every ping_seconds; a ping without a reply within ping_timeout drops the link."""
        assert self._lost is not None
        while not self._lost.is_set():
            try:
                await asyncio.wait_for(self._lost.wait(), self.ping_seconds)
                return
            except asyncio.TimeoutError:
                try:
                    await self.send({"Action": "Ping"}, timeout=self.ping_timeout)
                except asyncio.TimeoutError:
                    raise AMIError(f"no Ping reply within {self.ping_timeout:g} s: the link is dead") from None

    def _drop(self) -> None:
        self.authenticated = False
        if self.protocol is not None and not self.protocol.closed:
            self.protocol.transport.abort()
            self.protocol.connection_lost(None)
        self.protocol = None

    def lost(self, exc: Exception | None) -> None:
        if not self._stopping:
            log.warning("AMI link to %s:%s lost%s", self.config["host"], self.config["port"], f": {exc}" if exc else "")
        if self._lost is not None:
            self._lost.set()

    async def stop(self) -> None:
        self._stopping = True
        if self._stop_requested is not None:
            self._stop_requested.set()
        if self.protocol is not None and not self.protocol.closed:
            try:
                await self.send({"Action": "Logoff"}, timeout=2)
            except (AMIError, asyncio.TimeoutError):
                log.debug("AMI logoff not answered")
        self._drop()
        if self._lost is not None:
            self._lost.set()

    def _set_status(self, status: str, error: str) -> None:
        changed = status != self.status
        self.status, self.last_error = status, error
        if changed:
            (log.info if status in ("connected", "stopped") else log.warning)("AMI %s%s", status,
                                                                                f": {error}" if error else "")
            self._notify([("pbx.status", {"status": status, "error": error})])

    # ------------------------------------------------------------------------- actions
    async def send(self, action: dict[str, Any], timeout: float | None = None) -> Any:
        """Send one action and wait for its reply (a list for list actions and async Originate)."""
        name = str(action.get("Action", "")).lower()
        if self.protocol is None or self.protocol.closed or (not self.authenticated and name != "login"):
            raise AMINotConnected(f"{action.get('Action')}: not connected to Asterisk ({self.status})")
        future = self.protocol.send(HotlineAction(action))
        return await asyncio.wait_for(future, timeout or self.action_timeout)

    async def checked(self, action: dict[str, Any], timeout: float | None = None) -> Message:
        reply = await self.send(action, timeout)
        first = reply[0] if isinstance(reply, list) else reply
        if first.get("Response") != "Success":
            raise AMIError(f"{action.get('Action')}: {first.get('Message', first.get('Response'))}")
        return first

    async def originate(self, channel: str, context: str, exten: str = "s", *, caller_id: str = "",
                        variables: dict[str, str] | None = None, ring_seconds: int = 30,
                        action_id: str | None = None) -> OriginateResult:
        """Place a call (async Originate) and wait for its OriginateResponse event."""
        action: dict[str, Any] = {"Action": "Originate", "Channel": channel, "Context": context, "Exten": exten,
                                  "Priority": "1", "Async": "true", "Timeout": str(int(ring_seconds * 1000))}
        if caller_id:
            action["CallerID"] = caller_id
        if variables:
            action["Variable"] = [f"{k}={v}" for k, v in variables.items()]
        if action_id:
            action["ActionID"] = action_id
        reply = await self.send(action, timeout=ring_seconds + self.action_timeout + 30)
        if not isinstance(reply, list):
            raise AMIError(f"Originate refused: {reply.get('Message', reply.get('Response'))}")
        event = reply[-1]
        reason = str(event.get("Reason", ""))
        outcome = "answered" if event.get("Response") == "Success" else ORIGINATE_REASONS.get(reason, "failed")
        return OriginateResult(str(event.get("ActionID", "")), outcome, reason,
                               event.get("Channel") or None, known(event.get("Uniqueid")))

    async def queue_pause(self, interface: str, paused: bool, reason: str = "", queue: str | None = None) -> Message:
        action = {"Action": "QueuePause", "Interface": interface, "Paused": "true" if paused else "false"}
        if reason:
            action["Reason"] = reason
        if queue:
            action["Queue"] = queue
        return await self._agent_action(action, queue or "*", interface, "pause")

    async def queue_add(self, queue: str, interface: str, member_name: str = "", paused: bool = False) -> Message:
        action = {"Action": "QueueAdd", "Queue": queue, "Interface": interface, "Paused": "true" if paused else "false"}
        if member_name:
            action["MemberName"] = member_name
        return await self._agent_action(action, queue, interface, "membership")

    async def queue_remove(self, queue: str, interface: str) -> Message:
        return await self._agent_action({"Action": "QueueRemove", "Queue": queue, "Interface": interface},
                                        queue, interface, "membership")

    async def _agent_action(self, action: dict[str, Any], queue: str, interface: str, aspect: str) -> Message:
        key = (queue, interface, aspect)
        if self.protocol is None or not self.authenticated:
            self._replay[key] = action   # the latest wish is applied after reconnect
            raise AMINotConnected(f"{action['Action']} kept for after reconnect: not connected ({self.status})")
        self._replay.pop(key, None)
        return await self.checked(action)

    async def _apply_replay(self) -> None:
        wishes, self._replay = self._replay, {}
        for action in wishes.values():
            try:
                await self.checked(action)
            except AMIError as exc:  # "Already there" / "Not there": the wish already holds
                log.info("AMI replay of %s: %s", action.get("Action"), exc)

    async def redirect(self, channel: str, context: str, exten: str, priority: int = 1) -> Message:
        return await self.checked({"Action": "Redirect", "Channel": channel, "Context": context,
                                   "Exten": exten, "Priority": str(priority)})

    async def queue_status(self) -> list[Message]:
        reply = await self.send({"Action": "QueueStatus"})
        return reply[1:-1] if isinstance(reply, list) else []

    async def core_show_channels(self) -> list[Message]:
        reply = await self.send({"Action": "CoreShowChannels"})
        return reply[1:-1] if isinstance(reply, list) else []

    async def resync(self) -> None:
        """Rebuild queues, members and live calls from Asterisk after a (re)connect. The live events
        that arrive while the lists are fetched are newer than the lists: the state holds them back
        and applies them after the lists (see ivr.ami_state)."""
        self.state.begin_resync()
        try:
            items = await self.queue_status() + await self.core_show_channels()
        except BaseException:
            self._notify(self.state.end_resync(None, self._apply))
            raise
        notices = self.state.end_resync(items, self._apply)
        notices.append(("pbx.resync", self.state.wallboard()))
        self._notify(notices)

    # -------------------------------------------------------------------------- events
    def received(self, messages: list[Message]) -> None:
        """Called by the protocol with every complete message of one read."""
        assert self.protocol is not None
        responses = self.protocol.responses
        notices: list[Notice] = []
        for message in messages:
            action_id = message.get("ActionID")
            pending = responses.get(action_id) if action_id else None
            event = message.get("Event")
            # an event carrying a pending action's ActionID is part of its reply (list items,
            # OriginateResponse); a UserEvent action's echo event is not: its reply came first
            if pending is not None and (event is None or event != "UserEvent"):
                if pending.add_message(message):
                    responses.pop(action_id, None)
                continue
            if event is None:
                continue   # a reply nobody waits for (timed out, or sent without an ActionID)
            if event == "Shutdown":
                log.warning("Asterisk is shutting down (restart: %s)", message.get("Restart"))
            notices += self._apply(message)
            self.dispatch(message)
        if notices:
            self._notify(notices)

    def _apply(self, message: Message) -> list[Notice]:
        try:
            return self.state.apply(message)
        except Exception:  # a surprising event must not end the stream for the others
            self.handler_errors += 1
            log.exception("AMI state could not take %s", message.get("Event"))
            return []

    def dispatch(self, event: Message) -> list[str]:
        """Registered listeners (fnmatch patterns, case-sensitive), each isolated."""
        matches = []
        event.manager = self
        name = event.get("Event", "")
        for pattern, regexp in self.patterns:
            if regexp.match(name) is None:
                continue
            matches.append(pattern)
            for callback in self.callbacks[pattern]:
                try:
                    result = callback(self, event)
                except Exception:
                    self.handler_errors += 1
                    log.exception("AMI listener %r failed on %s", callback, name)
                    continue
                if asyncio.iscoroutine(result):
                    asyncio.ensure_future(result).add_done_callback(self._listener_done)
        return matches

    def _listener_done(self, task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.handler_errors += 1
            log.error("AMI listener failed: %r", task.exception())

    def _notify(self, notices: list[Notice]) -> None:
        """Publish on the bus in order, from one task, without holding up the reader."""
        if self.bus is None or not notices:
            return
        self._pending_notices.extend(notices)
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.ensure_future(self._publish_pending())

    async def _publish_pending(self) -> None:
        while self._pending_notices:
            batch, self._pending_notices = self._pending_notices, []
            for topic, data in batch:
                await self.bus.publish(topic, data)

