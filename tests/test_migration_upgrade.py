"""A database made before the parts had migration branches of their own (revision 0004, the common
trunk) upgrades in place to every branch's head, keeping every row and every value."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic import command
from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, MetaData, String, Text, create_engine, select

from hotline.migrate import alembic_config, pending_revisions

AT = datetime(2026, 11, 23, 9, 0)   # naive UTC, as the columns store it


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    server = request.getfixturevalue("postgres")
    return server.create_database(f"upgrade_{tmp_path.name[-20:].replace('-', '_')}")


def value_for(column, n: int, rows: dict[str, dict]):
    """A value of the column's type (one row per table), a foreign key pointing at its table's row."""
    for fk in column.foreign_keys:
        return rows[fk.column.table.name][fk.column.name]
    kind = column.type
    if column.primary_key and isinstance(kind, Integer):
        return 1
    if isinstance(kind, Boolean):
        return True
    if isinstance(kind, Integer):
        return 7 + n
    if isinstance(kind, Float):
        return 1.5
    if isinstance(kind, DateTime):
        return AT
    if isinstance(kind, JSON):
        return {"kept": True}
    if isinstance(kind, (String, Text)):
        length = getattr(kind, "length", None) or 40
        return f"{column.name}-{n}"[-length:] if length >= 3 else "x"
    raise AssertionError(f"no filler for {column.table.name}.{column.name} ({kind!r})")


def test_a_database_of_the_common_trunk_upgrades_with_every_row_kept(empty_url):
    cfg = alembic_config(empty_url)
    command.upgrade(cfg, "0004")
    engine = create_engine(empty_url.replace("postgresql://", "postgresql+psycopg://"))
    old = MetaData()
    old.reflect(engine)
    tables = [t for t in old.sorted_tables if t.name != "alembic_version"]
    assert {"cases", "calls", "sms_messages", "sms_work_items", "users", "outbox"} <= {t.name for t in tables}
    rows = {}
    with engine.begin() as conn:
        for table in tables:
            row = {c.name: value_for(c, i, rows) for i, c in enumerate(table.columns)}
            if table.name == "cases":            # a phone case named by its call's uniqueid, as before 0005
                row.update(channel="phone", idempotency_key="uniqueid-1")
            if table.name == "calls":            # a voicemail nobody has seen
                row.update(uniqueid="uniqueid-1", outcome="voicemail", case_id=None)
            conn.execute(table.insert().values(**row))
            rows[table.name] = row
    command.upgrade(cfg, "heads")
    new = MetaData()
    new.reflect(engine)
    with engine.connect() as conn:
        versions = {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
        for table in tables:
            kept = conn.execute(select(*(new.tables[table.name].c[c.name] for c in table.columns))).mappings().all()
            assert [dict(r) for r in kept] == [rows[table.name]], table.name
        case = conn.execute(select(new.tables["cases"].c.call_uniqueid)).scalar_one()
        message = conn.execute(select(new.tables["calls"].c.message_state)).scalar_one()
    engine.dispose()
    assert pending_revisions(versions) == []
    assert case == "uniqueid-1" and message == "open"     # the old link and the unseen message carried over
