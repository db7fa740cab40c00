"""Alembic environment for Flask-Migrate: runs against the app's own engine and metadata."""
import fcntl
import logging
from contextlib import contextmanager
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy import text

config = context.config
# Keep the app's loggers alive: alembic's default logging config would disable them.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_db = current_app.extensions["migrate"].db
config.set_main_option("sqlalchemy.url",
                       target_db.engine.url.render_as_string(hide_password=False).replace("%", "%%"))


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_db.metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    def skip_empty_autogenerate(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")

    conf_args = current_app.extensions["migrate"].configure_args
    conf_args.setdefault("process_revision_directives", skip_empty_autogenerate)
    with target_db.engine.connect() as connection, migration_lock(connection):
        context.configure(connection=connection, target_metadata=target_db.metadata, **conf_args)
        with context.begin_transaction():
            context.run_migrations()


# Any fixed number: the advisory lock's name, the same for every process that migrates this database.
ADVISORY_LOCK_KEY = 0x7011_6A7E


@contextmanager
def migration_lock(connection):
    """One migration run at a time: two `flask db upgrade` at once (two machines deploying, a unit
    and a container starting together) would both create the first tables and one fail halfway.

    Postgres: a session-level advisory lock, taken before alembic reads the current revision, so
    the second run waits and then finds the database at head. Taken and committed outside
    alembic's transaction; released explicitly, and by the server if the process dies. SQLite: an
    exclusive lock on a file beside the database (every process that opens it is on this machine).
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        connection.commit()  # end the implicit transaction; the session-level lock stays
        try:
            yield
        finally:
            if connection.in_transaction():
                connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
            connection.commit()
    elif connection.dialect.name == "sqlite" and connection.engine.url.database not in (None, "", ":memory:"):
        with open(f"{connection.engine.url.database}.migrate-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            yield
    else:
        yield


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
