"""`hotline simulate-call`: a call played into our own FastAGI flows, no PBX needed.

The FastAGI server runs here on an ephemeral port of 127.0.0.1; the caller is the same
Asterisk-side peer the tests use. What the caller would hear is printed as the prompt
catalogue's text.

By default the call runs on a throw-away copy of the database (a copy of a SQLite database,
or an empty one with the reference data), so trying the IVR writes no call record, no case
and no survey answer where the hotline keeps them; `write=True` (`--write`) uses the
configured database. A survey is simulated only on the copy, where a callback key is minted
for the case: on the real database an answer is accepted only from a callback the hotline
placed.
"""
from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path, PurePath

from sqlalchemy import select

from case_bridge import Case, CaseCore, seed_units
from hotline.db import Database
from hotline.migrate import upgrade
from hotline.settings import Settings
from ivr import survey_keys
from ivr.agi_peer import AGIPeer
from ivr.prompts import load_catalogue
from ivr.runtime import build_agi_server


async def simulate_call(settings: Settings, script: str, caller: str, keys: list[str],
                        case_number: str | None = None, hangup_after: int | None = None,
                        write: bool = False) -> list[str]:
    if write and script == "survey":
        raise ValueError("a survey answer is recorded on the hotline's database only from a callback it placed; "
                         "simulate the survey without --write (on a throw-away copy)")
    with tempfile.TemporaryDirectory(prefix="hotline-sim-") as scratch:
        run_on = settings if write else settings.model_copy(update={"database_url": _scratch_copy(settings, scratch)})
        upgrade(run_on.database_url)
        db = Database(run_on.database_url)
        try:
            if not write:
                with db.session() as s:
                    seed_units(s)
            lines = await _play(run_on, db, script, caller, keys, case_number, hangup_after)
        finally:
            db.dispose()
    where = "the configured database" if write else "a throw-away copy of the database (nothing kept; --write to keep)"
    return [f"(on {where})", *lines]


def _scratch_copy(settings: Settings, folder: str) -> str:
    target = Path(folder) / "simulated.db"
    source = settings.database_url.split(":///", 1)[-1] if settings.is_sqlite else ""
    if source and source != ":memory:" and Path(source).is_file():
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
            src.backup(dst)
        src.close()
        dst.close()
    return f"sqlite:///{target}"


async def _play(settings: Settings, db: Database, script: str, caller: str, keys: list[str],
                case_number: str | None, hangup_after: int | None) -> list[str]:
    catalogue = load_catalogue()
    variables: dict[str, str] = {}
    if case_number:
        variables = {"HOTLINE_CASE": case_number, "HOTLINE_SURVEY_KEY": _callback_key(db, case_number)}
    agi = build_agi_server(settings, db, CaseCore(settings))
    server = await agi.start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    uniqueid = f"sim-{time.time():.3f}"
    try:
        peer = AGIPeer("127.0.0.1", port, script, caller=caller, keys=keys, hangup_after=hangup_after,
                       uniqueid=uniqueid, variables=variables, dnid="12319")
        result = await peer.run()
    finally:
        await agi.close(server)
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


def _callback_key(db: Database, case_number: str) -> str:
    """The simulated callback's key (on the throw-away copy only); '' when there is no such case."""
    with db.session() as s:
        case_id = s.scalar(select(Case.id).where(Case.number == case_number))
        if case_id is None:
            return ""
        return survey_keys.issue(s, case_id, f"simulate:{case_id}", 1, "模拟回访（simulate-call，一次性数据库）")
