"""Read sessions and write sessions (issue 17 point 12).

On SQLite a write session begins with BEGIN IMMEDIATE and takes the write lock; a read
session begins with a deferred BEGIN, so under WAL it reads while a writer holds the lock.
Every ordering below is made with threading.Event; nothing waits on a clock.
"""
from __future__ import annotations

import shutil
import threading

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from hotline.accounts import User
from hotline.db import Database, ReadOnlySessionError

WAIT = 10  # seconds: a bound on a hang, never a measure


def _user(name: str) -> User:
    return User(username=name, role="agent", password_hash="x", display_name=name)


def _usernames(session) -> set[str]:
    return set(session.scalars(select(User.username)))


def test_read_session_reads_while_a_writer_holds_its_transaction(db):
    wrote, release, read_done = threading.Event(), threading.Event(), threading.Event()
    seen: list[set[str]] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with db.session() as s:
                s.add(_user("uncommitted"))
                s.flush()          # written, the lock held, not committed
                wrote.set()
                release.wait(WAIT)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            wrote.set()

    def reader() -> None:
        try:
            with db.read_session() as s:
                seen.append(_usernames(s))
            read_done.set()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    w = threading.Thread(target=writer)
    w.start()
    assert wrote.wait(WAIT)
    r = threading.Thread(target=reader)
    r.start()
    r.join(WAIT)
    finished_while_writer_held_lock = read_done.is_set() and not release.is_set()
    release.set()
    w.join(WAIT)
    r.join(WAIT)
    assert not errors, errors
    assert finished_while_writer_held_lock
    assert seen == [set()]  # the writer's row is not visible before it commits
    with db.read_session() as s:
        assert _usernames(s) == {"uncommitted"}


def test_a_write_inside_a_read_session_raises(db):
    with db.session() as s:
        s.add(_user("kept"))
    with pytest.raises(ReadOnlySessionError, match="read session"):
        with db.read_session() as s:
            s.add(_user("orm-write"))
            s.flush()
    with pytest.raises(DBAPIError):  # SQL that bypasses the ORM is refused by the database itself
        with db.read_session() as s:
            s.execute(text("UPDATE users SET display_name = 'changed'"))
    with db.read_session() as s:
        assert _usernames(s) == {"kept"}
        assert s.scalar(select(User.display_name)) == "kept"


def test_after_a_read_session_the_same_pooled_connection_writes(db_url):
    db = Database(db_url, pool_size=1, max_overflow=0)  # one connection: the writer gets the reader's
    try:
        with db.read_session() as s:
            reader_conn = s.connection().connection.dbapi_connection
            assert _usernames(s) == set()
        with db.session() as s:
            assert s.connection().connection.dbapi_connection is reader_conn
            s.add(_user("after-read"))
        with db.session() as s:
            assert _usernames(s) == {"after-read"}
            if db.engine.dialect.name == "sqlite":
                assert s.scalar(text("PRAGMA query_only")) == 0
    finally:
        db.dispose()


@pytest.fixture
def impatient_sqlite(tmp_path, sqlite_template):
    """A SQLite database whose connections do not wait for a lock (busy_timeout 0): waiting for the
    write lock shows as 'database is locked' at once instead of as a wait."""
    target = tmp_path / "impatient.db"
    shutil.copy(sqlite_template, target)
    db = Database(f"sqlite:///{target}")

    @event.listens_for(db.engine, "connect")  # after the project's own connect listener
    def _no_wait(dbapi_conn, _record) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    yield db
    db.dispose()


def test_sqlite_write_sessions_queue_for_the_lock_and_read_sessions_do_not(impatient_sqlite):
    db = impatient_sqlite
    with db.session() as holder:
        holder.add(_user("holder"))
        holder.flush()  # this connection holds the write lock
        with pytest.raises(OperationalError, match="locked"):  # BEGIN IMMEDIATE needs the lock
            with db.session() as s:
                s.scalar(select(func.count()).select_from(User))
        with db.read_session() as s:  # a deferred BEGIN does not
            assert _usernames(s) == set()
    with db.read_session() as s:
        assert _usernames(s) == {"holder"}
