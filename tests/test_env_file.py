"""Cron and systemd run commands with an empty environment: they read the env file, and production
without a database refuses to run instead of starting on a new SQLite file (wsgi.py, config.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from portal.config import DEFAULT_ENV_FILE, ConfigError, load_env_file
from tests.factories import make_user

ROOT = Path(__file__).resolve().parent.parent


def run(args, env, **kwargs):
    """A process started as `env -i VAR=... command` starts it: nothing inherited but PATH."""
    return subprocess.run(args, cwd=ROOT, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
                          capture_output=True, text=True, timeout=120, **kwargs)


def flask(*args, env):
    return run([sys.executable, "-m", "flask", "--app", "wsgi", *args], env)


def show_config(name: str, env) -> str:
    done = run([sys.executable, "-c", f"import wsgi; print(wsgi.app.config[{name!r}])"], env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_commands_read_the_env_file(app, tmp_path):
    make_user("in-the-env-file@example.com")
    env_file = tmp_path / "tollgate.env"
    env_file.write_text(f"# as an operator writes it\nDATABASE_URL={app.config['SQLALCHEMY_DATABASE_URI']}\n"
                        f"SECRET_KEY={'k' * 40}\nSITE_NAME=\"From the file\"\n")
    env = {"TOLLGATE_ENV_FILE": str(env_file)}
    found = flask("users", "list", env=env)
    assert found.returncode == 0, found.stderr
    assert "in-the-env-file@example.com" in found.stdout  # the file's database, not a fallback
    verified = flask("ledger", "verify", env=env)
    assert verified.returncode == 0 and "ledger ok" in verified.stdout, verified.stderr
    assert show_config("SITE_NAME", env) == "From the file"
    # The environment wins over the file.
    assert show_config("SITE_NAME", {**env, "SITE_NAME": "From the environment"}) == "From the environment"


def test_production_without_a_database_refuses_to_run(tmp_path):
    env_file = tmp_path / "tollgate.env"
    env_file.write_text(f"PORTAL_ENV=production\nSECRET_KEY={'k' * 40}\nPUBLIC_URL=https://ai.example.com\n")
    fallback = ROOT / "instance" / "portal.db"
    before = fallback.stat().st_mtime_ns if fallback.exists() else None
    for args in (("ledger", "verify"), ("db", "upgrade")):
        refused = flask(*args, env={"TOLLGATE_ENV_FILE": str(env_file)})
        assert refused.returncode != 0
        assert "DATABASE_URL must be set when PORTAL_ENV=production" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert (fallback.stat().st_mtime_ns if fallback.exists() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tollgate.env"]


def test_a_named_env_file_that_is_missing_refuses_to_run(tmp_path):
    refused = flask("ledger", "verify", env={"TOLLGATE_ENV_FILE": str(tmp_path / "typo.env")})
    assert refused.returncode != 0 and "TOLLGATE_ENV_FILE names" in refused.stderr


@pytest.mark.one_backend
def test_the_environment_wins_and_the_default_file_is_optional(tmp_path):
    env_file = tmp_path / "tollgate.env"
    env_file.write_text("DATABASE_URL=sqlite:///from-file.db\nHOST=0.0.0.0\nEMPTY=\n")
    environ = {"TOLLGATE_ENV_FILE": str(env_file), "HOST": "127.0.0.1"}
    assert load_env_file(environ) == env_file
    assert environ["HOST"] == "127.0.0.1" and environ["DATABASE_URL"] == "sqlite:///from-file.db"
    assert load_env_file({}, default=tmp_path / "absent.env") is None
    with pytest.raises(ConfigError, match="TOLLGATE_ENV_FILE"):
        load_env_file({"TOLLGATE_ENV_FILE": str(tmp_path / "absent.env")})
    assert DEFAULT_ENV_FILE == ROOT / "instance" / "tollgate.env"
