"""Alembic environment: the URL comes from the caller (hotline.migrate) or the settings."""
from alembic import context

import case_bridge.models  # noqa: F401  (registers the case tables)
import hotline.accounts  # noqa: F401  (registers users and api keys)
from hotline.db import Base, make_engine
from hotline.settings import get_settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url


def run() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
