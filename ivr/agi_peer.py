"""Asterisk's side of FastAGI, for `hotline simulate-call`, the tests and the benchmark.

It behaves as the Asterisk 22.10.1 recordings show: the environment in two writes (LF only,
fields in Asterisk's order), one reply line per command, `200 result= (timeout)` from GET DATA
without keys, `result=-1` then a separate `HANGUP` line when the caller hangs up during a
prompt, an unsolicited `HANGUP` when they hang up between commands, `511` for media commands
on a dead channel, and `HANGUP` + close when the script half-closes its side.

The caller is scripted: `keys` is what they press at each prompt that reads keys (one entry
per GET DATA / WAIT FOR DIGIT; "" = silence; "123#" = digits then #), `presses` the key they
press while a prompt is streamed (prompt file name → key; it interrupts a STREAM FILE whose
escape digits include it, as Asterisk replies `result=<ASCII code>`), `hangup_after` the
number of commands after which they hang up. With `check_files`, a file that does not exist
plays as on a real Asterisk: STREAM FILE `result=-1 endpos=0`, GET DATA `result=-1` at once,
and no HANGUP after it.
"""
from __future__ import annotations

import asyncio
import os
import re
import shlex
import time
from dataclasses import dataclass, field

ENV_ORDER = ("network", "network_script", "request", "channel", "language", "type", "uniqueid", "version",
             "callerid", "calleridname", "callingpres", "callingani2", "callington", "callingtns", "dnid",
             "rdnis", "context", "extension", "priority", "enhanced", "accountcode", "threadid")
DEAD_OK = ("GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE", "NOOP")
DEAD = "511 Command Not Permitted on a dead channel or intercept routine"
USAGE = ("520-Invalid command syntax.  Proper usage follows:\n"
         " Usage: GET DATA <file to be streamed> [timeout] [maxdigits]\n"
         "520 End of proper usage.\n")


@dataclass
class Exchange:
    command: str
    reply: str
    at: float  # seconds since the session started


@dataclass
class PeerResult:
    exchanges: list[Exchange] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    played: list[str] = field(default_factory=list)   # the files streamed, in order
    hung_up: bool = False
    closed_by_server: bool = False
    round_trips: list[float] = field(default_factory=list)  # seconds, command → next command

    @property
    def commands(self) -> list[str]:
        return [e.command for e in self.exchanges]


class AGIPeer:
    """Plays one call into a FastAGI server, as Asterisk would."""

    def __init__(self, host: str, port: int, script: str = "inbound", *, caller: str = "13800138000",
                 caller_name: str = "Hotline Caller", keys: list[str] | tuple[str, ...] = (),
                 hangup_after: int | None = None, hangup_while_idle: bool = False,
                 uniqueid: str | None = None, variables: dict[str, str] | None = None,
                 channel: str = "PJSIP/trunk-00000001", dnid: str = "12319", args: tuple[str, ...] = (),
                 timeout: float = 30.0, presses: dict[str, str] | None = None, check_files: bool = False) -> None:
        self.host, self.port, self.script = host, port, script
        self.caller, self.caller_name = caller, caller_name
        self.keys = list(keys)
        self.presses = dict(presses or {})
        self.check_files = check_files
        self.hangup_after = hangup_after
        self.hangup_while_idle = hangup_while_idle
        self.uniqueid = uniqueid or f"{int(time.time())}.{id(self) % 100000}"
        self.channel, self.dnid, self.args = channel, dnid, args
        self.timeout = timeout
        self.result = PeerResult(variables=dict(variables or {}))
        self.result.variables.setdefault("UNIQUEID", self.uniqueid)
        self.result.variables.setdefault("CALLERID(num)", caller)
        self.result.variables.setdefault("CALLERID(name)", caller_name)

    def environment(self) -> list[bytes]:
        values = {
            "network": "yes", "network_script": self.script,
            "request": f"agi://{self.host}:{self.port}/{self.script}", "channel": self.channel,
            "language": "zh", "type": self.channel.split("/", 1)[0], "uniqueid": self.uniqueid,
            "version": "22.10.1", "callerid": self.caller or "unknown", "calleridname": self.caller_name or "unknown",
            "callingpres": "0", "callingani2": "0", "callington": "0", "callingtns": "0", "dnid": self.dnid,
            "rdnis": "unknown", "context": "hotline-inbound", "extension": self.dnid, "priority": "4",
            "enhanced": "0.0", "accountcode": "", "threadid": "139884473169600",
        }
        lines = [f"agi_{k}: {values[k]}\n" for k in ENV_ORDER]
        lines += [f"agi_arg_{n}: {a}\n" for n, a in enumerate(self.args, 1)]
        blob = "".join(lines).encode("utf-8")
        cut = blob.index(b"agi_extension")  # Asterisk's environment arrived in two reads
        return [blob[:cut], blob[cut:] + b"\n"]

    async def run(self) -> PeerResult:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            await asyncio.wait_for(self._session(reader, writer), self.timeout)
        finally:
            writer.close()
        return self.result

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = time.perf_counter()
        for part in self.environment():
            writer.write(part)
        await writer.drain()
        last = None
        while True:
            raw = await reader.readline()
            now = time.perf_counter()
            if not raw:  # the script finished: Asterisk says HANGUP and closes
                self.result.closed_by_server = True
                writer.write(b"HANGUP\n")
                await writer.drain()
                return
            if last is not None:
                self.result.round_trips.append(now - last)
            command = raw.decode("utf-8", "replace").rstrip("\r\n")
            hang_now = self.hangup_after is not None and not self.result.hung_up \
                and len(self.result.exchanges) >= self.hangup_after
            if hang_now and self.hangup_while_idle:
                self.result.hung_up = True
                writer.write(b"HANGUP\n")
            reply, then_hangup = self._reply(command, hang_now and not self.hangup_while_idle)
            self.result.exchanges.append(Exchange(command, reply.rstrip("\n"), now - start))
            writer.write(reply.encode("utf-8"))
            await writer.drain()
            if then_hangup:
                self.result.hung_up = True
                await asyncio.sleep(0.04)
                writer.write(b"HANGUP\n")
                await writer.drain()
            last = time.perf_counter()

    def _missing(self, path: str) -> bool:
        """Asterisk looks for the file under each format it knows; we ship WAV."""
        return self.check_files and not any(os.path.exists(path + ext) for ext in (".wav", ".WAV", ".sln", ".gsm"))

    def _next_keys(self) -> str | None:
        return self.keys.pop(0) if self.keys else None

    def _reply(self, command: str, hang_during: bool) -> tuple[str, bool]:
        """(reply text, whether the caller hangs up during this command)."""
        upper = command.upper()
        try:
            words = shlex.split(command)
        except ValueError:
            return "520 Invalid command syntax.\n", False
        if self.result.hung_up and not upper.startswith(DEAD_OK):
            return DEAD + "\n", False
        blocking = upper.startswith(("STREAM FILE", "GET DATA", "WAIT FOR DIGIT", "EXEC", "SAY "))
        if hang_during and blocking:
            if upper.startswith(("STREAM FILE", "GET DATA")) and len(words) > 2:
                self.result.played.append(words[2])
            return "200 result=-1 endpos=8000\n" if upper.startswith("STREAM FILE") else "200 result=-1\n", True
        if hang_during:  # a non-blocking command: the hangup arrives unsolicited afterwards
            reply, _ = self._reply(command, False)
            return reply, True
        return self._answer(upper, words), False

    def _answer(self, upper: str, words: list[str]) -> str:
        if upper == "ANSWER":
            return "200 result=0\n"
        if upper.startswith("STREAM FILE") and len(words) >= 3:
            if self._missing(words[2]):
                return "200 result=-1 endpos=0\n"
            self.result.played.append(words[2])
            pressed = self.presses.pop(os.path.basename(words[2]), "")
            escape = words[3] if len(words) > 3 else ""
            if pressed and pressed[0] in escape:
                return f"200 result={ord(pressed[0])} endpos=8000\n"
            return "200 result=0 endpos=16000\n"
        if upper.startswith("GET DATA"):
            if len(words) < 3:
                return USAGE
            if self._missing(words[2]):
                return "200 result=-1\n"
            self.result.played.append(words[2])
            max_digits = int(words[4]) if len(words) > 4 and words[4].isdigit() else 1024
            keys = self._next_keys()
            if not keys:
                return "200 result= (timeout)\n"
            digits, hash_pressed, _ = keys.partition("#")
            digits = re.sub(r"[^0-9*]", "", digits)[:max_digits]
            timed_out = not hash_pressed and len(digits) < max_digits
            return f"200 result={digits}{' (timeout)' if timed_out else ''}\n"
        if upper.startswith("WAIT FOR DIGIT"):   # one key of the caller's entry at a time
            keys = self._next_keys()
            if keys and len(keys) > 1:
                self.keys.insert(0, keys[1:])
            return f"200 result={ord(keys[0]) if keys else 0}\n"
        if upper.startswith(("SAY DIGITS", "SAY NUMBER")):
            return "200 result=0\n"
        if upper.startswith("SET VARIABLE") and len(words) >= 4:
            self.result.variables[words[2]] = words[3]
            return "200 result=1\n"
        if upper.startswith("GET FULL VARIABLE") and len(words) >= 4:
            name = words[3].removeprefix("${").removesuffix("}")
            value = self.result.variables.get(name)
            return f"200 result=1 ({value})\n" if value is not None else "200 result=0\n"
        if upper.startswith("GET VARIABLE") and len(words) >= 3:
            value = self.result.variables.get(words[2])
            return f"200 result=1 ({value})\n" if value is not None else "200 result=0\n"
        if upper.startswith("EXEC"):
            return "200 result=0\n" if len(words) > 1 and words[1].lower() in ("playback", "wait", "noop") \
                else "200 result=-2\n"
        if upper.startswith(("VERBOSE", "NOOP")):
            return "200 result=1\n" if upper.startswith("VERBOSE") else "200 result=0\n"
        if upper == "CHANNEL STATUS":
            return "200 result=6\n"
        if upper == "HANGUP":
            self.result.hung_up = True
            return "200 result=1\n"
        return "510 Invalid or unknown command\n"
