"""Read the raw AMI and FastAGI wire transcripts recorded from a real Asterisk 22.10.1.

The transcripts live in ``tests/fixtures/asterisk22/*.jsonl`` (copied byte-exact from the project's
shared reference data; see the README there). Each JSON line is one record: ``t`` (seconds since the
scenario started), ``dir`` (``in`` = bytes Asterisk sent, ``out`` = bytes sent to Asterisk,
``open``/``close`` = a TCP connection event, ``mark`` = a note from the scenario driver, never on the
wire), ``conn`` and ``data``. For ``in``/``out`` records ``data`` is the exact bytes of ONE socket read
(``in``) or write (``out``), so the records also keep Asterisk's real read boundaries — including the
replies that arrived split over two reads.

Helpers:

* :func:`load` — every record of a transcript as :class:`Record`;
* :func:`inbound_stream` / :func:`inbound_chunks` — what Asterisk sent on one connection;
* :func:`events_from` — those bytes cut into complete AMI messages (responses *and* events);
* :func:`parse_message` — one AMI message into a header dict (repeated keys become lists);
* :func:`agi_sessions` — the FastAGI sessions of a transcript: environment block, lines, final HANGUP.
"""
from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk22"

AMI_BANNER = b"Asterisk Call Manager/11.0.0\r\n"
AMI_TERMINATOR = b"\r\n\r\n"


@dataclass(frozen=True)
class Record:
    """One line of a transcript.

    ``data`` holds wire bytes for ``in``/``out`` records and is ``b""`` otherwise. ``note`` holds the
    text of ``open``/``close``/``mark`` records (who closed, why a connect failed, the driver's note);
    ``mark`` is that text for ``mark`` records only. ``conn`` is ``None`` on marks.
    """

    t: float
    dir: str
    conn: int | None
    data: bytes = b""
    mark: str | None = None
    note: str | None = None
    rewritten: bool = False


def path_of(name: str) -> Path:
    """The fixture file of transcript ``name`` (``"ami_actions"`` or ``"ami_actions.jsonl"``)."""
    file = FIXTURES / (name if name.endswith(".jsonl") else f"{name}.jsonl")
    if not file.is_file():
        known = sorted(p.name[: -len(".jsonl")] for p in FIXTURES.glob("*.jsonl"))
        raise FileNotFoundError(f"no transcript {name!r} in {FIXTURES}; known: {', '.join(known)}")
    return file


@functools.cache
def _load(name: str) -> tuple[Record, ...]:
    records = []
    for lineno, line in enumerate(path_of(name).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        raw = json.loads(line)
        direction = raw["dir"]
        if direction in ("in", "out"):
            data = base64.b64decode(raw["b64"]) if "b64" in raw else raw["data"].encode("utf-8")
            records.append(Record(raw["t"], direction, raw["conn"], data, rewritten=bool(raw.get("rewritten"))))
        elif direction in ("open", "close", "mark"):
            text = raw.get("data")
            records.append(Record(raw["t"], direction, raw.get("conn"), b"",
                                  mark=text if direction == "mark" else None, note=text))
        else:
            raise ValueError(f"{name}:{lineno}: unknown record dir {direction!r}")
    return tuple(records)


def load(name: str) -> list[Record]:
    """All records of transcript ``name``, in file order."""
    return list(_load(name.removesuffix(".jsonl")))


def inbound_chunks(name: str, conn: int = 1) -> list[Record]:
    """The ``in`` records (one per socket read of Asterisk's bytes) of one connection, in order."""
    return [r for r in _load(name.removesuffix(".jsonl")) if r.dir == "in" and r.conn == conn]


def outbound_chunks(name: str, conn: int = 1) -> list[Record]:
    """The ``out`` records (one per socket write of the recorded client) of one connection."""
    return [r for r in _load(name.removesuffix(".jsonl")) if r.dir == "out" and r.conn == conn]


def inbound_stream(name: str, conn: int = 1) -> bytes:
    """Every byte Asterisk sent on connection ``conn``, concatenated (AMI: banner included)."""
    return b"".join(r.data for r in inbound_chunks(name, conn))


def split_messages(stream: bytes) -> tuple[list[bytes], bytes]:
    """Cut AMI bytes into complete messages (each ending in ``\\r\\n\\r\\n``) and the incomplete rest."""
    messages = []
    start = 0
    while (end := stream.find(AMI_TERMINATOR, start)) != -1:
        messages.append(stream[start:end + len(AMI_TERMINATOR)])
        start = end + len(AMI_TERMINATOR)
    return messages, stream[start:]


def events_from(name: str, conn: int = 1) -> list[bytes]:
    """Asterisk's AMI bytes on ``conn`` as complete messages, banner line excluded.

    Every message keeps its ``\\r\\n\\r\\n`` terminator, so ``b"".join(...)`` gives back the stream
    minus the banner. Responses are included (they are messages too); use :func:`parse_message` to
    tell ``Event:`` from ``Response:``.
    """
    stream = inbound_stream(name, conn)
    if stream.startswith(b"Asterisk Call Manager/"):
        stream = stream[stream.index(b"\r\n") + 2:]
    messages, rest = split_messages(stream)
    if rest:
        raise ValueError(f"{name} conn {conn}: {len(rest)} bytes after the last complete message")
    return messages


def action_ids(name: str, conn: int = 1) -> set[str]:
    """The ActionIDs of every action the recorded client sent on ``conn``."""
    ids = set()
    messages, _ = split_messages(b"".join(r.data for r in outbound_chunks(name, conn)))
    for message in messages:
        action_id = parse_message(message).get("ActionID")
        if isinstance(action_id, str):
            ids.add(action_id)
    return ids


def parse_message(message: bytes | str) -> dict[str, str | list[str]]:
    """Headers of one AMI message, in order. A key seen twice (``Variable:``) maps to a list.

    Lines may end in ``\\r\\n`` or ``\\n`` (Asterisk accepts both from clients). The value is what
    follows ``": "``; a header without a space after the colon keeps its value as is. Lines without a
    colon are ignored (the banner, garbage).
    """
    text = message.decode("utf-8", "surrogateescape") if isinstance(message, bytes) else message
    headers: dict[str, str | list[str]] = {}
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        key, colon, value = line.partition(":")
        if not colon or not key:
            continue
        value = value.removeprefix(" ")
        if key in headers:
            previous = headers[key]
            headers[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            headers[key] = value
    return headers


# --- FastAGI --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgiLine:
    """One complete line of a FastAGI session after the environment block.

    ``dir`` is ``"in"`` (from Asterisk: replies, ``HANGUP``) or ``"out"`` (a command from the script).
    ``data`` includes the ``\\n``. ``t`` is the time of the read/write that completed the line.
    """

    t: float
    dir: str
    data: bytes


@dataclass(frozen=True)
class AgiSession:
    """One FastAGI connection as recorded (Asterisk connects to the script's server).

    * ``env_block`` — the ``agi_*: value\\n`` lines and the empty line that ends them, byte-exact;
      ``env_chunks`` — the same bytes as Asterisk's reads delivered them (two reads in these files);
      ``env`` — the parsed variables, in order; ``args`` — ``agi_arg_1``… values.
    * ``lines`` — every later line in order, both directions.
    * ``half_closed_at`` — when the script half-closed its side (``shutdown(SHUT_WR)``), or ``None``;
      ``closed_at`` — when Asterisk closed the socket.
    * ``records`` — the raw ``in``/``out`` records of the connection (real read boundaries).
    """

    name: str
    conn: int
    env_block: bytes
    env_chunks: tuple[bytes, ...]
    env: dict[str, str]
    args: tuple[str, ...]
    lines: tuple[AgiLine, ...]
    half_closed_at: float | None
    closed_at: float | None
    records: tuple[Record, ...] = field(repr=False)

    def commands(self) -> list[bytes]:
        """The command lines the script sent, in order."""
        return [line.data for line in self.lines if line.dir == "out"]

    def _final_start(self) -> int:
        """Index in ``lines`` of the first line Asterisk sent after the script half-closed."""
        last_out = max((i for i, line in enumerate(self.lines) if line.dir == "out"), default=-1)
        start = last_out + 1
        if self.half_closed_at is not None:
            while start < len(self.lines) and self.lines[start].t < self.half_closed_at:
                start += 1
        else:
            start = len(self.lines)
        return start

    def exchanges(self) -> list[tuple[bytes, list[bytes]]]:
        """Each command with the lines Asterisk sent after it and before the next command (or before
        the script half-closed). A multi-line ``520-`` usage reply gives several lines; a ``HANGUP``
        that arrived after a reply (caller hung up) is in the list of the command it followed."""
        pairs: list[tuple[bytes, list[bytes]]] = []
        for line in self.lines[: self._final_start()]:
            if line.dir == "out":
                pairs.append((line.data, []))
            elif pairs:
                pairs[-1][1].append(line.data)
        return pairs

    def final_lines(self) -> list[bytes]:
        """What Asterisk sent after the script half-closed (``[b"HANGUP\\n"]`` in every recording)."""
        return [line.data for line in self.lines[self._final_start():]]


def _lines(chunks: list[Record]) -> list[AgiLine]:
    out: list[AgiLine] = []
    buffers = {"in": b"", "out": b""}
    for record in chunks:
        buffers[record.dir] += record.data
        while (end := buffers[record.dir].find(b"\n")) != -1:
            out.append(AgiLine(record.t, record.dir, buffers[record.dir][:end + 1]))
            buffers[record.dir] = buffers[record.dir][end + 1:]
    return out


def agi_sessions(name: str) -> list[AgiSession]:
    """The FastAGI sessions of transcript ``name`` (one per connection), in connection order."""
    records = load(name)
    sessions = []
    for conn in sorted({r.conn for r in records if r.conn is not None and r.dir in ("in", "out")}):
        mine = [r for r in records if r.conn == conn]
        wire = [r for r in mine if r.dir in ("in", "out")]
        inbound = b"".join(r.data for r in wire if r.dir == "in")
        end = inbound.find(b"\n\n")
        if end == -1:
            raise ValueError(f"{name} conn {conn}: no end of the AGI environment block")
        env_block = inbound[:end + 2]
        env_chunks, taken, rest_records = [], 0, []
        for record in wire:
            if record.dir == "in" and taken < len(env_block):
                piece = record.data[: len(env_block) - taken]
                env_chunks.append(piece)
                taken += len(piece)
                if len(piece) < len(record.data):  # the env block and the first line shared a read
                    rest_records.append(Record(record.t, "in", conn, record.data[len(piece):]))
            else:
                rest_records.append(record)
        env: dict[str, str] = {}
        for line in env_block.decode("utf-8").split("\n"):
            key, colon, value = line.partition(": ")
            if colon:
                env[key] = value
        args = tuple(env[k] for k in sorted((k for k in env if k.startswith("agi_arg_")),
                                              key=lambda k: int(k.rsplit("_", 1)[1])))
        closes = [r for r in mine if r.dir == "close"]
        half = next((r.t for r in closes if r.note and "half-close" in r.note), None)
        closed = next((r.t for r in closes if r.note and "EOF from Asterisk" in r.note), None)
        sessions.append(AgiSession(name.removesuffix(".jsonl"), conn, env_block, tuple(env_chunks), env, args,
                                   tuple(_lines(rest_records)), half, closed, tuple(wire)))
    return sessions
