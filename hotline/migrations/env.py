"""Alembic environment: the URL comes from the caller (hotline.migrate) or the settings.

The scripts describe every change themselves; the metadata is whatever models the caller has
imported (the kernel imports no part's models), which only autogenerate would look at."""
from alembic import context

from hotline.db import Base, make_engine
from hotline.settings import get_settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it and dropping the old one, which the foreign keys of
            # the rows that point at it refuse; they are off for the migration and checked after it.
            # (A PRAGMA inside a transaction is ignored: this runs on the driver's connection first.)
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=sqlite)
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            connection.commit()
            raw = connection.connection.driver_connection
            broken = raw.execute("PRAGMA foreign_key_check").fetchall()
            raw.execute("PRAGMA foreign_keys=ON")
            if broken:
                raise RuntimeError(f"migration left rows whose foreign keys point nowhere: {broken[:5]}")
    engine.dispose()


run()
