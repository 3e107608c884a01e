"""Fixtures: every case-core test runs on SQLite and on a real PostgreSQL server."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import text

import ivr.models  # noqa: F401  (the calls table, truncated between tests like every table)
import sms.models  # noqa: F401
import agent_ui.models  # noqa: F401
from case_bridge import CaseCore, seed_units
from hotline.accounts import Actor, User, hash_password, issue_api_key
from hotline.clock import ManualClock, use_clock
from hotline.db import Base, Database
from hotline.migrate import upgrade
from hotline.settings import get_settings, load_settings
from tests.support.postgres import PostgresServer, PostgresUnavailable

ROLES = [("agent1", "agent", None), ("disp1", "dispatcher", None), ("futian1", "district", "440304"),
         ("nanshan1", "district", "440305"), ("super1", "supervisor", None), ("admin1", "admin", None)]


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """No test reads the developer's hotline.toml or environment."""
    monkeypatch.chdir(tmp_path)
    for key in list(__import__("os").environ):
        if key.startswith("HOTLINE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOTLINE_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def postgres():
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    server.template_url = server.create_database("hotline_test")
    upgrade(server.template_url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, sqlite_template) -> str:
    if request.param == "sqlite":
        target = tmp_path / "hotline.db"
        shutil.copy(sqlite_template, target)
        return f"sqlite:///{target}"
    server = request.getfixturevalue("postgres")
    db = Database(server.template_url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    db.dispose()
    return server.template_url


@pytest.fixture
def settings(db_url, tmp_path):
    return load_settings(database_url=db_url, data_dir=tmp_path / "var")


@pytest.fixture
def db(settings):
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    """The product's clock for this test (hotline.clock): Monday 2026-11-23 09:00 in Shenzhen, a working
    day inside working hours, whatever day the machine thinks it is."""
    fake = ManualClock(datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc))
    with use_clock(fake):
        yield fake


@pytest.fixture
def core(settings, clock) -> CaseCore:
    return CaseCore(settings, now=clock)


@dataclass
class People:
    actors: dict[str, Actor]
    keys: dict[str, str]

    def __getitem__(self, name: str) -> Actor:
        return self.actors[name]

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]}"}


PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)  # argon2 is slow on purpose: hash once for the whole run


@pytest.fixture
def people(db, password_hash) -> People:
    actors, keys = {}, {}
    with db.session() as s:
        seed_units(s)
        for username, role, unit in ROLES:
            user = User(username=username, role=role, password_hash=password_hash, display_name=username, unit_code=unit)
            s.add(user)
            s.flush()
            actors[username] = Actor.of(user)
            keys[username] = issue_api_key(s, user, "test")
    return People(actors, keys)


# Tests whose outcome could depend on the day they run: those on the product clock, and the modules
# of calendars, deadlines, quiet hours and calling hours. CI runs them again under faketime in a
# later year (.ci/run), so a time bomb cannot land.
TIME_SENSITIVE_MODULES = {"test_calendar", "test_kernel", "test_kpi", "test_outbox", "test_sms_service",
                          "test_survey_call", "test_sms_inbound", "test_cli"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if "clock" in getattr(item, "fixturenames", ()) or module in TIME_SENSITIVE_MODULES:
            item.add_marker(pytest.mark.time_sensitive)
