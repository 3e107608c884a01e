"""Database engine, sessions and the column types every part shares.

SQLite runs in WAL mode and opens write transactions with BEGIN IMMEDIATE, so two
writers queue on the lock instead of failing half-way. Read sessions (`Database.read_session`)
begin with a deferred BEGIN instead, so under WAL they read while a writer holds the lock;
on PostgreSQL they are READ ONLY transactions. A write inside a read session raises.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from sqlalchemy import JSON, Connection, DateTime, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from hotline import clock


def utcnow() -> datetime:
    """The product clock's now (`hotline.clock`): tests set it, nothing else reads the system time."""
    return clock.now()


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC: the same on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


READ_ONLY = "hotline_read_only"  # execution option marking the connections of Database.read_engine


class ReadOnlySessionError(RuntimeError):
    """Something tried to write inside a read session; writes belong in Database.session()."""


def _read_only(conn: Connection) -> bool:
    return bool(conn.get_execution_options().get(READ_ONLY, False))


def _refuse_flush(session: Session, _flush_context, _instances) -> None:
    raise ReadOnlySessionError("a read session cannot write (add, change or delete rows); use Database.session()")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict: JSON, list: JSON}


def _prepare_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read = _read_only(conn)
        # query_only belongs to the pooled connection, which serves readers and writers in turn:
        # every transaction sets it, so a writer never inherits a reader's
        conn.exec_driver_sql(f"PRAGMA query_only={'ON' if read else 'OFF'}")
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")


def _prepare_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if _read_only(conn):  # the transaction's first statement; it ends with the transaction
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")


def conflict_insert(session: Session, table):
    """INSERT for `table` that can say what to do on a unique conflict (`.on_conflict_do_nothing`,
    `.on_conflict_do_update`): PostgreSQL's or SQLite's dialect of it, for the session's database."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        _prepare_sqlite(engine)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    _prepare_postgresql(engine)
    return engine


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, **engine_kwargs) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_engine = self.engine.execution_options(**{READ_ONLY: True})  # the same pool
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        event.listen(self.read_sessions, "before_flush", _refuse_flush)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for lookups only: on SQLite a deferred BEGIN, so it does not queue behind
        writers; on PostgreSQL a READ ONLY transaction. Writing in it raises ReadOnlySessionError
        (ORM changes) or the database's own error (SQL)."""
        with self.read_sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
