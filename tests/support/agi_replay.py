"""Replays a recorded Asterisk FastAGI session against our server, byte for byte.

Asterisk's side as recorded: the environment in its recorded reads, then for each command the
script sends, the recorded reply lines (a multi-line 520 and a trailing HANGUP included), and
after the script half-closes, the recorded final lines and EOF. A command different from the
recorded one is a test failure (`mismatches`).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tests.support.transcripts import AgiSession


@dataclass
class ReplayResult:
    commands: list[bytes] = field(default_factory=list)
    mismatches: list[tuple[bytes, bytes]] = field(default_factory=list)
    saw_half_close: bool = False


async def replay(session: AgiSession, host: str, port: int, script: str | None = None,
                 idle_hangup_before: int | None = None) -> ReplayResult:
    """Play `session` into the server; `script` renames the route; `idle_hangup_before` sends the
    unsolicited HANGUP (caller gone while the script was idle) before that command's reply."""
    result = ReplayResult()
    reader, writer = await asyncio.open_connection(host, port)
    env = [c for c in session.env_chunks]
    if script:
        env = [c.replace(f"agi_network_script: {session.env['agi_network_script']}\n".encode(),
                         f"agi_network_script: {script}\n".encode()) for c in env]
    for chunk in env:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0)
    exchanges = session.exchanges()
    try:
        for n, (expected, replies) in enumerate(exchanges):
            line = await asyncio.wait_for(reader.readline(), 5)
            if not line:
                return result
            result.commands.append(line)
            if line != expected:
                result.mismatches.append((expected, line))
            if idle_hangup_before == n:
                writer.write(b"HANGUP\n")
            for reply in replies:
                writer.write(reply)
                await writer.drain()
                await asyncio.sleep(0.001)  # keep the recorded line boundaries as separate reads
        rest = await asyncio.wait_for(reader.read(), 5)
        result.saw_half_close = rest == b""
        for final in session.final_lines():
            writer.write(final)
        await writer.drain()
    finally:
        writer.close()
    return result
