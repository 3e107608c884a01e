"""The FastAGI server: panoramisk's `Application`, with the defects of panoramisk 1.4 fixed.

- The AGI environment is read with a time limit and a size limit, and a connection that closes
  before the blank line ending it is dropped alone (panoramisk loops forever on it and freezes
  every other call on the event loop).
- `add_route` takes plain functions too (panoramisk wraps them with `asyncio.coroutine`,
  which Python 3.11 no longer has).
- Replies are read with a timeout and understood as Asterisk 22 sends them: the unsolicited
  `HANGUP` line, `511` on a dead channel, the multi-line `520` usage text, `result=-1` after
  a caller hung up during a prompt (the `HANGUP` line follows about 40 ms later).
- A flow ends by half-closing its side; Asterisk then sends `HANGUP` and closes, and the
  dialplan goes on with `AGISTATUS=SUCCESS`.
"""
from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

from panoramisk.fast_agi import Application, Request

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024       # a real environment is about 600 bytes
MAX_REPLY_LINES = 200              # a 520 usage text is a dozen lines
HEADER_LINE = re.compile(r"^(agi_[a-z0-9_]{1,40}): ?(.*)$")
REPLY = re.compile(r"^(?P<code>\d{3}) result=(?P<result>-?[0-9*#A-D]*)(?: \((?P<data>.*?)\))?(?: endpos=(?P<endpos>-?\d+))?\s*$", re.ASCII)
# commands whose result=-1 may mean the caller hung up (the HANGUP line then follows)
MEDIA_COMMANDS = ("STREAM FILE", "GET DATA", "WAIT FOR DIGIT", "EXEC", "SAY ", "CONTROL STREAM FILE", "GET OPTION")
HANGUP_GRACE_SECONDS = 0.2


class AGIError(Exception):
    """The session cannot go on (no reply, a broken reply, a closed connection)."""


class PromptFailed(Exception):
    """Asterisk could not play a file (result=-1 with the caller still there): a missing prompt."""


class CallerHungUp(AGIError):
    """The caller is gone; flows stop here and keep what they learned."""


class AGIHeaderError(AGIError):
    """The AGI environment block is malformed, too large or never finished."""


@dataclass(frozen=True)
class AGIReply:
    code: int
    result: str          # as sent: "0", "1234", "-1", "" (GET DATA with no digits)
    data: str | None     # the parenthesised part: a variable's value, "timeout"
    endpos: int | None
    line: str

    @property
    def value(self) -> int | None:
        return int(self.result) if self.result.lstrip("-").isdigit() else None


def parse_reply(line: str) -> AGIReply:
    m = REPLY.match(line)
    if m:
        endpos = m.group("endpos")
        return AGIReply(int(m.group("code")), m.group("result"), m.group("data"),
                        int(endpos) if endpos is not None else None, line)
    code = line[:3]
    if re.fullmatch(r"[0-9]{3}", code):  # 510 Invalid or unknown command, 511 dead channel, 520 usage
        return AGIReply(int(code), "", line[4:], None, line)
    raise AGIError(f"unreadable AGI reply {line[:120]!r}")


def parse_header(block: bytes) -> dict[str, str]:
    """The `agi_*: value` lines of the environment block (LF-terminated, CR tolerated)."""
    headers: dict[str, str] = {}
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AGIHeaderError(f"AGI environment is not UTF-8 (byte {exc.start})") from None
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if not line:
            continue
        m = HEADER_LINE.match(line)
        if m is None:
            raise AGIHeaderError(f"AGI environment line {n} is not 'agi_name: value': {line[:80]!r}")
        headers[m.group(1)] = m.group(2)
    if "agi_network_script" not in headers and "agi_request" not in headers:
        raise AGIHeaderError("AGI environment names no script (agi_network_script / agi_request)")
    return headers


def route_name(headers: dict[str, str]) -> str:
    script = headers.get("agi_network_script")
    if script is None:  # agi://host:port/inbound?x=y → inbound
        script = headers["agi_request"].split("://", 1)[-1].partition("/")[2]
    return script.split("?", 1)[0].strip("/")


def _key(result: str) -> str:
    """The key in a STREAM FILE / WAIT FOR DIGIT result (its ASCII code); "" for none."""
    code = int(result) if result.isdigit() else 0
    return chr(code) if 0 < code < 128 and chr(code) in "0123456789*#ABCD" else ""


def quote(value: str) -> str:
    """One AGI argument: quoted, with quotes and backslashes escaped, no line breaks."""
    clean = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
    return f'"{clean}"'


class AGICall(Request):
    """One FastAGI session, as the flows see it: commands in, replies out, hangup as an exception."""

    def __init__(self, app: "AGIServer", headers: dict[str, str], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        super().__init__(app, headers, reader, writer, encoding="utf-8")
        self.command_timeout = app.command_timeout
        self.hung_up = False
        self.commands = 0

    # what Asterisk told us about the call
    @property
    def uniqueid(self) -> str:
        return self.headers.get("agi_uniqueid", "")

    @property
    def caller(self) -> str:
        return self.headers.get("agi_callerid", "")

    @property
    def caller_name(self) -> str:
        return self.headers.get("agi_calleridname", "")

    @property
    def args(self) -> list[str]:
        return [self.headers[k] for k in sorted((k for k in self.headers if k.startswith("agi_arg_")),
                                                key=lambda k: int(k[8:]) if k[8:].isdigit() else 0)]

    async def send_command(self, command: str) -> AGIReply:  # type: ignore[override]
        """Send one command and read its reply; raises CallerHungUp once the channel is dead."""
        if "\n" in command or "\r" in command:
            raise ValueError("an AGI command is one line")
        self.commands += 1
        self.writer.write(command.encode("utf-8") + b"\n")
        await self.writer.drain()
        reply = await self._read_reply()
        if reply.code == 511:
            self.hung_up = True
            raise CallerHungUp(f"{command}: channel is dead")
        if reply.code != 200:
            log.warning("AGI %s on %s: %s", command, self.uniqueid, reply.line)
        elif reply.result == "-1" and command.upper().startswith(MEDIA_COMMANDS):
            if self.hung_up or await self._hangup_follows():
                raise CallerHungUp(f"{command}: caller hung up")
            log.debug("AGI %s on %s failed: %s (a missing prompt file?)", command, self.uniqueid, reply.line)
        return reply

    async def _readline(self, timeout: float) -> str:
        try:
            async with asyncio.timeout(timeout):  # not wait_for: that costs a Task per reply
                raw = await self.reader.readline()
        except TimeoutError:
            raise AGIError(f"no reply from Asterisk within {timeout:g} s") from None
        except (ValueError, asyncio.LimitOverrunError):
            raise AGIError("AGI reply line too long") from None
        except ConnectionError as exc:
            raise CallerHungUp(f"connection lost: {exc}") from None
        if not raw.endswith(b"\n"):
            raise CallerHungUp("Asterisk closed the AGI connection")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    async def _read_reply(self) -> AGIReply:
        for _ in range(MAX_REPLY_LINES):
            line = await self._readline(self.command_timeout)
            if line == "HANGUP":      # unsolicited: the caller hung up while we were idle
                self.hung_up = True
                continue
            if line.startswith("100"):  # 100 Trying…
                continue
            if line.startswith("520-"):  # usage text until "520 End of proper usage."
                lines = [line]
                while not line.startswith("520 "):
                    line = await self._readline(self.command_timeout)
                    lines.append(line)
                    if len(lines) > MAX_REPLY_LINES:
                        raise AGIError("520 usage text without an end")
                return AGIReply(520, "", "\n".join(lines), None, lines[0])
            return parse_reply(line)
        raise AGIError("too many HANGUP / 100 lines without a reply")

    async def _hangup_follows(self) -> bool:
        try:
            line = await self._readline(HANGUP_GRACE_SECONDS)
        except CallerHungUp:
            return True
        except AGIError:
            return False
        if line == "HANGUP":
            self.hung_up = True
            return True
        raise AGIError(f"unexpected line after a failed command: {line[:80]!r}")

    # the commands flows use
    async def answer(self) -> None:
        await self.send_command("ANSWER")

    async def stream(self, path: str, escape_digits: str = "") -> str:
        """Play `path`; a key in `escape_digits` stops it and is returned ("" when none was pressed).
        Raises PromptFailed when Asterisk cannot play the file."""
        reply = await self.send_command(f"STREAM FILE {path} {quote(escape_digits)}")
        if reply.code == 200 and reply.result == "-1":
            raise PromptFailed(path)
        return _key(reply.result) if reply.code == 200 else ""

    async def get_data(self, path: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play `path` and collect up to max_digits keys ('#' ends); (digits, timed_out).
        Raises PromptFailed when Asterisk cannot play the file (it then reads no keys at all)."""
        reply = await self.send_command(f"GET DATA {path} {int(timeout_ms)} {int(max_digits)}")
        if reply.code != 200:
            return "", True
        if reply.result == "-1":
            raise PromptFailed(path)
        return reply.result, reply.data == "timeout"

    async def wait_digits(self, timeout_ms: int, max_digits: int, first: str = "") -> tuple[str, bool]:
        """Collect keys without a prompt (WAIT FOR DIGIT each), as GET DATA would: '#' ends, silence
        for `timeout_ms` is a time-out; `first` is a key the caller already pressed."""
        digits = ""
        key = first
        while True:
            if key == "#":
                return digits, False
            if key:
                digits += key
                if len(digits) >= max_digits:
                    return digits, False
            reply = await self.send_command(f"WAIT FOR DIGIT {int(timeout_ms)}")
            key = _key(reply.result) if reply.code == 200 else ""
            if not key:
                return digits, True

    async def set_variable(self, name: str, value: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"bad channel variable name {name!r}")
        await self.send_command(f"SET VARIABLE {name} {quote(value)}")

    async def get_variable(self, name: str) -> str | None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_()]*", name):
            raise ValueError(f"bad channel variable name {name!r}")
        reply = await self.send_command(f"GET VARIABLE {name}")
        return reply.data if reply.code == 200 and reply.result == "1" else None

    async def verbose(self, text: str, level: int = 1) -> None:
        await self.send_command(f"VERBOSE {quote(text)} {int(level)}")


Endpoint = Callable[[AGICall], Awaitable[Any] | Any]


class AGIServer(Application):
    """panoramisk's FastAGI application with bounded header reads and isolated sessions."""

    def __init__(self, header_timeout: float = 5.0, command_timeout: float = 60.0,
                 max_header_bytes: int = MAX_HEADER_BYTES, permit: Iterable[str] | None = None) -> None:
        # panoramisk's __init__ only fetches an event loop (deprecated outside one); the routes
        # table and encoding it sets up are set here
        dict.__init__(self)
        self.loop = None
        self._route: dict[str, Endpoint] = {}
        self.default_encoding = "utf-8"
        self.header_timeout = header_timeout
        self.command_timeout = command_timeout
        self.max_header_bytes = max_header_bytes
        # None: anyone may connect (tests of the protocol); the product always passes agi_permit
        self.permit = None if permit is None else [ipaddress.ip_network(n, strict=False) for n in permit]
        self.sessions = 0          # finished sessions, for the status page and the benchmark
        self.rejected = 0          # connections dropped for a bad environment or an unknown route
        self.active: set[asyncio.Task] = set()

    def add_route(self, path: str, endpoint: Endpoint) -> None:
        if not callable(endpoint):
            raise TypeError(f"route {path!r}: endpoint must be callable")
        if path in self._route:
            raise ValueError(f"route {path!r} already exists")
        self._route[path] = endpoint

    @property
    def routes(self) -> list[str]:
        return sorted(self._route)

    async def start(self, host: str, port: int, backlog: int = 1024) -> asyncio.AbstractServer:
        # asyncio's default backlog (100) resets connections when a busy hour's calls arrive at once
        return await asyncio.start_server(self.handler, host, port, limit=self.max_header_bytes, backlog=backlog)

    async def close(self, server: asyncio.AbstractServer, grace: float = 5.0) -> None:
        """Stop listening; let running sessions finish for `grace` seconds, then end them."""
        server.close()
        if self.active:
            _, pending = await asyncio.wait(set(self.active), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await server.wait_closed()

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.active.add(task)
        peer = writer.get_extra_info("peername")
        try:
            if not self.permitted(peer):
                self.rejected += 1
                log.warning("FastAGI connection from %s refused: not in agi_permit", peer[0] if peer else peer)
                return
            headers = await self._read_header(reader, peer)
            if headers is not None:
                await self._serve(headers, reader, writer)
            await self._finish(reader, writer)
        except asyncio.CancelledError:  # server shutdown: this connection's task simply ends
            log.info("FastAGI session from %s ended by shutdown", peer)
        finally:
            writer.close()
            if task is not None:
                self.active.discard(task)

    def permitted(self, peer: Any) -> bool:
        if self.permit is None:
            return True
        try:
            address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except (TypeError, ValueError, IndexError):
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in net for net in self.permit)

    async def _read_header(self, reader: asyncio.StreamReader, peer: Any) -> dict[str, str] | None:
        try:
            async with asyncio.timeout(self.header_timeout):
                block = await reader.readuntil(b"\n\n")
            return parse_header(block)
        except asyncio.TimeoutError:
            problem = f"no complete AGI environment within {self.header_timeout:g} s"
        except asyncio.IncompleteReadError as exc:
            problem = f"connection closed inside the AGI environment after {len(exc.partial)} bytes"
        except asyncio.LimitOverrunError:
            problem = f"AGI environment larger than {self.max_header_bytes} bytes"
        except AGIHeaderError as exc:
            problem = str(exc)
        except ConnectionError as exc:
            problem = f"connection lost: {exc}"
        self.rejected += 1
        log.warning("FastAGI from %s dropped: %s", peer, problem)
        return None

    async def _serve(self, headers: dict[str, str], reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        name = route_name(headers)
        endpoint = self._route.get(name)
        if endpoint is None:
            self.rejected += 1
            log.error("FastAGI: no route %r (known: %s); call %s goes on in the dialplan",
                      name, ", ".join(self.routes), headers.get("agi_uniqueid"))
            return
        call = AGICall(self, headers, reader, writer)
        try:
            result = endpoint(call)
            if inspect.isawaitable(result):
                await result
        except CallerHungUp as exc:
            log.info("call %s (%s): caller hung up (%s)", call.uniqueid, name, exc, extra={"uniqueid": call.uniqueid})
        except AGIError as exc:
            log.warning("call %s (%s): session ended: %s", call.uniqueid, name, exc)
        except Exception:  # a flow's bug ends that call's flow only
            log.exception("call %s (%s): flow failed", call.uniqueid, name)
        finally:
            self.sessions += 1

    async def _finish(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, let Asterisk send its HANGUP and close, then close our side."""
        try:
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()
            async with asyncio.timeout(2.0):
                chunk = b"."
                while chunk:  # Asterisk's final "HANGUP", then EOF
                    chunk = await reader.read(4096)
        except (asyncio.TimeoutError, ConnectionError, OSError, asyncio.LimitOverrunError, ValueError):
            log.debug("FastAGI peer did not close in time")

