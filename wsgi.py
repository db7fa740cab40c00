"""The WSGI entry point: `flask --app wsgi serve` serves `app`; `flask --app wsgi` runs operator commands.

`serve` is the one supported way to serve it: only it applies WORKERS, SERVE_THREADS, the
connection and body limits, the trusted proxy and the disconnect detection to waitress, and runs
the periodic jobs and the logging setup. `waitress-serve wsgi:app` (or another WSGI server)
would skip all of that silently.

Both read the env file first (instance/tollgate.env, or TOLLGATE_ENV_FILE; the environment wins),
so cron jobs and systemd units need no exports of their own.
"""
import sys

from portal import config, create_app

try:
    config.load_env_file()
    config.require_database()
    app = create_app()
except config.ConfigError as exc:
    # One line naming the setting, not a traceback, and a non-zero exit before anything is created.
    sys.exit(f"tollgate: configuration error: {exc}")
