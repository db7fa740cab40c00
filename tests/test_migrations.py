"""The migrations build exactly the schema the models describe, from empty, on every backend."""
import flask_migrate
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from portal import create_app
from portal.extensions import db


def test_upgrade_from_empty_matches_models_and_downgrades_cleanly(database, tmp_path):
    with database.empty() as url:
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "t"})
        with app.app_context():
            flask_migrate.upgrade()
            with db.engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
                tables = set(inspect(conn).get_table_names())
            assert {t.name for t in db.metadata.sorted_tables} | {"alembic_version"} == tables

            flask_migrate.downgrade(revision="base")
            with db.engine.connect() as conn:
                assert set(inspect(conn).get_table_names()) <= {"alembic_version"}

            flask_migrate.upgrade()
            with db.engine.connect() as conn:
                assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
            db.engine.dispose()
