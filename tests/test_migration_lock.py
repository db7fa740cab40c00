"""Two `flask db upgrade` at once on a fresh database: both succeed, one after the other (migrations/env.py)."""
import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from portal.config import database_url
from portal.extensions import db

ROOT = Path(__file__).resolve().parent.parent
RUNS = 3  # more than two makes an overlap near certain without the lock, on a busy machine too


def _upgrade(url: str, tmp_path: Path) -> subprocess.Popen:
    (tmp_path / "empty.env").touch()  # not the instance folder's env file, whatever it says
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": url, "SECRET_KEY": "x" * 40,
           "PORTAL_ENV": "development", "TOLLGATE_ENV_FILE": str(tmp_path / "empty.env")}
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_concurrent_upgrades_both_succeed(database, tmp_path):
    with database.empty() as url:
        runs = [_upgrade(url, tmp_path) for _ in range(RUNS)]
        outputs = [run.communicate(timeout=600)[0] for run in runs]
        for run, output in zip(runs, outputs):
            assert run.returncode == 0, output
        head = ScriptDirectory(str(ROOT / "migrations")).get_current_head()
        engine = create_engine(database_url(url))
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
                assert set(db.metadata.tables) <= set(inspect(conn).get_table_names())
        finally:
            engine.dispose()
