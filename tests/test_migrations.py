"""The migrations build exactly the schema the models describe, on both databases, and undo cleanly."""
from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import case_bridge.models  # noqa: F401
import hotline.accounts  # noqa: F401
import ivr.models  # noqa: F401
import sms.models  # noqa: F401
import agent_ui.models  # noqa: F401
from hotline.db import Base, Database
from hotline.migrate import alembic_config, pending_revisions


def test_migrated_schema_matches_the_models(db_url):
    db = Database(db_url)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        versions = {row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
    db.dispose()
    assert diff == []
    # the case core's 0005 is below ivr01, which depends on it; the SMS channel's and the web part's heads
    assert versions == {"ivr01", "sms01", "web01"}
    assert pending_revisions(versions) == []
    assert sorted(pending_revisions(["0004"])) == ["0005", "ivr01", "sms01", "web01"]


def test_downgrade_and_upgrade_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = alembic_config(url)
    command.upgrade(cfg, "heads")
    command.downgrade(cfg, "base")
    db = Database(url)
    assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
    db.dispose()
    command.upgrade(cfg, "heads")
    db = Database(url)
    assert "case_events" in inspect(db.engine).get_table_names()
    db.dispose()
