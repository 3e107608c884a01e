"""Database migrations (Alembic), run by `hotline db upgrade` and on `hotline run`.

One history, and each part that owns tables keeps its scripts beside it: the kernel's in
`hotline/migrations/versions`, a part's in `<part>/migrations`. Revisions 0001–0004 are the
common trunk from before the parts had branches; the case core's branch (`case_bridge`, from
0005) and telephony's (`ivr`, from ivr01) start at 0004, and the kernel's and the SMS channel's
start the same way with their first change (`revision --head 0004 --branch-label sms
--version-path sms/migrations`). A database made on the trunk upgrades in place; `upgrade` takes
every branch to its head.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Iterable

from alembic import command
from alembic.config import Config

SCRIPTS = Path(__file__).parent / "migrations"
# the parts that own tables: named, never imported here (the kernel only knows where their scripts are)
TABLE_OWNERS = ("agent_ui", "case_bridge", "ivr", "sms")


def version_locations() -> list[Path]:
    found = [SCRIPTS / "versions"]
    for part in TABLE_OWNERS:
        spec = importlib.util.find_spec(part)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"the package {part} is not installed: its tables cannot be migrated")
        found.append(Path(list(spec.submodule_search_locations)[0]) / "migrations")
    return found


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(str(p) for p in version_locations()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(url), revision)


def pending_revisions(applied: Iterable[str]) -> list[str]:
    """The revisions a database whose alembic_version rows are `applied` has still to run."""
    from alembic.script import ScriptDirectory
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return [r.revision for r in script.iterate_revisions("heads", tuple(applied))]
