"""`hotline simulate-call`: a call played into our own FastAGI flows, no PBX needed.

The FastAGI server runs here on an ephemeral port of 127.0.0.1, with the configured
database; the caller is the same Asterisk-side peer the tests use. What the caller would
hear is printed as the prompt catalogue's text.
"""
from __future__ import annotations

import time
from pathlib import PurePath

from case_bridge import CaseCore
from hotline.db import Database
from hotline.migrate import upgrade
from hotline.settings import Settings
from ivr.agi_peer import AGIPeer
from ivr.prompts import load_catalogue
from ivr.runtime import build_agi_server


async def simulate_call(settings: Settings, script: str, caller: str, keys: list[str],
                        case_number: str | None = None, hangup_after: int | None = None) -> list[str]:
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    catalogue = load_catalogue()
    agi = build_agi_server(settings, db, CaseCore(settings))
    server = await agi.start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    variables = {"HOTLINE_CASE": case_number, "HOTLINE_SURVEY_KEY": "simulated"} if case_number else {}
    uniqueid = f"sim-{time.time():.3f}"
    try:
        peer = AGIPeer("127.0.0.1", port, script, caller=caller, keys=keys, hangup_after=hangup_after,
                       uniqueid=uniqueid, variables=variables, dnid="12319")
        result = await peer.run()
    finally:
        await agi.close(server)
        db.dispose()
    lines = [f"call {uniqueid} from {caller} → agi://…/{script}, keys {keys or '(none)'}"]
    pending = list(keys)
    for exchange in result.exchanges:
        words = exchange.command.split()
        verb = " ".join(words[:2]).upper()
        if verb in ("STREAM FILE", "GET DATA") and len(words) > 2:
            prompt = PurePath(words[2]).name
            text = catalogue[prompt].text if prompt in catalogue else f"<{prompt}>"
            lines.append(f"  🔊 {text}")
            if verb == "GET DATA":
                pressed = pending.pop(0) if pending else ""
                lines.append(f"  ☎ caller presses: {pressed or '(nothing)'}  → {exchange.reply}")
        elif verb == "SET VARIABLE":
            lines.append(f"  ⚙ {' '.join(words[2:])}")
        elif exchange.reply.startswith(("5", "200 result=-1")):
            lines.append(f"  ! {exchange.command} → {exchange.reply}")
    if result.hung_up:
        lines.append("  ☎ caller hung up")
    for name in ("HOTLINE_INTENT", "HOTLINE_QUEUE", "HOTLINE_CASE", "HOTLINE_DISTRICT"):
        if name in result.variables:
            lines.append(f"{name}={result.variables[name]}")
    lines.append(f"{len(result.exchanges)} AGI commands; the dialplan continues"
                 f"{' (AGISTATUS=HANGUP)' if result.hung_up else ''}.")
    return lines
