"""Configuration read from the environment.

`load(instance_path, environ)` returns a plain dict for `app.config`; tests pass overrides to
`create_app` instead of touching the environment.
"""
import os
import secrets
from pathlib import Path

from .errors import InvalidAmount
from .money import parse_usd

ENVIRONMENTS = ("development", "production")


class ConfigError(RuntimeError):
    """The environment does not describe a runnable configuration."""


def database_url(raw: str) -> str:
    """Point Postgres URLs at psycopg 3, whatever spelling the operator used."""
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix):]
    return raw


def _int(environ, name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _seconds(environ, name: str, default: float) -> float:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {raw}")
    return value


def _usd(environ, name: str, default: str) -> int:
    try:
        return parse_usd(environ.get(name) or default, what=name)
    except InvalidAmount as exc:
        raise ConfigError(str(exc)) from None


def _secret_key(environ, env: str, instance: Path) -> str:
    key = environ.get("SECRET_KEY", "")
    if key:
        return key
    if env == "production":
        raise ConfigError("SECRET_KEY must be set when PORTAL_ENV=production")
    # Development keeps a generated key so sessions survive restarts without any setup.
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def load(instance_path: str, environ=os.environ) -> dict:
    """Build the app configuration from environment variables."""
    env = environ.get("PORTAL_ENV", "development")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"PORTAL_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")
    instance = Path(instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    production = env == "production"
    threads = _int(environ, "SERVE_THREADS", 48)
    max_request = _int(environ, "MAX_REQUEST_BYTES", 32 * 1024 * 1024)
    return {
        "PORTAL_ENV": env,
        "SECRET_KEY": _secret_key(environ, env, instance),
        "SQLALCHEMY_DATABASE_URI": database_url(
            environ.get("DATABASE_URL") or f"sqlite:///{instance / 'portal.db'}"
        ),
        "SQLITE_BUSY_TIMEOUT_MS": _int(environ, "SQLITE_BUSY_TIMEOUT_MS", 30_000),
        "REDIS_URL": environ.get("REDIS_URL", ""),
        "REDIS_PREFIX": environ.get("REDIS_PREFIX", "tollgate:"),
        "SMTP_URL": environ.get("SMTP_URL", ""),
        "MAIL_FROM": environ.get("MAIL_FROM", "Tollgate <no-reply@localhost>"),
        "MAIL_OUTBOX": environ.get("MAIL_OUTBOX") or str(instance / "outbox"),
        "HOST": environ.get("HOST", "127.0.0.1"),
        "PORT": _int(environ, "PORT", 8000),
        "SERVE_THREADS": threads,
        "SERVE_CONNECTION_LIMIT": _int(environ, "SERVE_CONNECTION_LIMIT", threads * 8),
        # Streams beyond this are refused at once with 503, keeping threads free for the portal
        # and for the refusals themselves, instead of queueing inside waitress.
        "PROXY_MAX_INFLIGHT": _int(environ, "PROXY_MAX_INFLIGHT", max(1, threads - 8)),
        "MAX_CONTENT_LENGTH": max_request,
        "TRUSTED_PROXY_HOPS": _int(environ, "TRUSTED_PROXY_HOPS", 0, minimum=0),
        "UPSTREAM_CONNECT_TIMEOUT": _seconds(environ, "UPSTREAM_CONNECT_TIMEOUT", 10.0),
        "UPSTREAM_FIRST_BYTE_TIMEOUT": _seconds(environ, "UPSTREAM_FIRST_BYTE_TIMEOUT", 600.0),
        "UPSTREAM_IDLE_TIMEOUT": _seconds(environ, "UPSTREAM_IDLE_TIMEOUT", 120.0),
        "MODEL_CACHE_SECONDS": _seconds(environ, "MODEL_CACHE_SECONDS", 5.0),
        # Credit granted once when a new account confirms its email: a newcomer to the local demo
        # can make calls at once; production gives nothing unless the operator says so.
        "SIGNUP_CREDIT": _usd(environ, "SIGNUP_CREDIT_USD", "0" if production else "1"),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "PREFERRED_URL_SCHEME": "https" if production else "http",
    }
