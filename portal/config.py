"""Configuration read from the environment.

`load(instance_path, environ)` returns a plain dict for `app.config`; tests pass overrides to
`create_app` instead of touching the environment.
"""
import ipaddress
import os
import re
import secrets
from email.utils import parseaddr
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from .errors import InvalidAmount
from .money import parse_usd

ENVIRONMENTS = ("development", "production")
MIN_SECRET_KEY_LENGTH = 32
# Names a request may always use for the Host: health checks and tools on the machine itself.
LOCAL_HOSTS = ("localhost", "127.0.0.1")
_WILDCARDS = ("", "0.0.0.0", "::")
_HOSTNAME = re.compile(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]")


class ConfigError(RuntimeError):
    """The environment does not describe a runnable configuration."""


# The env file every command and server reads (wsgi.py), so cron and systemd see what a shell
# with the operator's exports sees. TOLLGATE_ENV_FILE names another; variables already set win.
DEFAULT_ENV_FILE = Path(__file__).resolve().parent.parent / "instance" / "tollgate.env"


def load_env_file(environ=os.environ, default: Path = DEFAULT_ENV_FILE) -> Optional[Path]:
    """Add the env file's settings to `environ` (those already set win); return the file read, if any.

    A missing default file is fine (development needs none); a TOLLGATE_ENV_FILE that names a
    missing file is a mistake in a unit or crontab and refuses to start.
    """
    from dotenv import dotenv_values

    named = (environ.get("TOLLGATE_ENV_FILE") or "").strip()
    path = Path(named) if named else default
    if not path.is_file():
        if named:
            raise ConfigError(f"TOLLGATE_ENV_FILE names {named}, which is not a file")
        return None
    for name, value in dotenv_values(path).items():
        if value is not None:
            environ.setdefault(name, value)
    return path


def require_database(environ=os.environ) -> None:
    """In production, refuse to run without DATABASE_URL rather than start on a new, empty SQLite file."""
    if environ.get("PORTAL_ENV") == "production" and not (environ.get("DATABASE_URL") or "").strip():
        raise ConfigError(f"DATABASE_URL must be set when PORTAL_ENV=production (in the environment or in "
                          f"{environ.get('TOLLGATE_ENV_FILE') or DEFAULT_ENV_FILE}); refusing to create a new "
                          "SQLite database")


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


def _choice(environ, name: str, choices: tuple) -> str:
    """One of `choices` (the first when unset)."""
    raw = (environ.get(name) or choices[0]).strip().lower()
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _seconds(environ, name: str, default: float, *, zero_allowed: bool = False) -> float:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not (value >= 0 if zero_allowed else value > 0):  # NaN fails both
        raise ConfigError(f"{name} must be {'zero or more' if zero_allowed else 'positive'}, got {raw}")
    return value


def _stale_hold_seconds(environ) -> int:
    value = _int(environ, "STALE_HOLD_SECONDS", 3 * 3600)
    first_byte = _seconds(environ, "UPSTREAM_FIRST_BYTE_TIMEOUT", 600.0)
    if value <= first_byte:
        # Released sooner, a call still waiting for its upstream would lose its hold and go unbilled.
        raise ConfigError(f"STALE_HOLD_SECONDS must exceed UPSTREAM_FIRST_BYTE_TIMEOUT ({first_byte:g}) by the "
                          f"longest stream you serve (default 10800, three hours), got {value}")
    return value


def _usd(environ, name: str, default: str) -> int:
    try:
        return parse_usd(environ.get(name) or default, what=name)
    except InvalidAmount as exc:
        raise ConfigError(str(exc)) from None


def _secret_key(environ, env: str, instance: Path) -> str:
    key = environ.get("SECRET_KEY", "")
    if key and env == "production" and len(key) < MIN_SECRET_KEY_LENGTH:
        # A short key can be guessed offline from any signed cookie, and then sessions forged.
        raise ConfigError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters when "
                          "PORTAL_ENV=production; generate one with: python -c "
                          "'import secrets; print(secrets.token_urlsafe(48))'")
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


def public_url(raw: str, *, production: bool, default: str) -> str:
    """PUBLIC_URL, checked: the scheme and host people reach the site by, without a trailing slash.

    Links in mail and on pages are built from it, never from the request's Host header, which
    the client chooses.
    """
    raw = (raw or "").strip()
    if not raw:
        if production:
            raise ConfigError("PUBLIC_URL must be set when PORTAL_ENV=production, e.g. https://ai.example.com")
        raw = default
    try:
        parts = urlsplit(raw)
        parts.port
    except ValueError as exc:
        raise ConfigError(f"PUBLIC_URL is not a valid URL ({exc}): {raw!r}") from None
    example = "https://ai.example.com (an IDN host in its xn-- form)"
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"PUBLIC_URL must look like {example}, got {raw!r}")
    if parts.username is not None or parts.query or parts.fragment or parts.path not in ("", "/") \
            or raw.endswith(("?", "#")):
        raise ConfigError(f"PUBLIC_URL must be the site's root, without a path, query, fragment or "
                          f"user name, got {raw!r}")
    host = parts.netloc.rpartition(":")[0] if parts.port else parts.netloc
    if not _HOSTNAME.fullmatch(host.lower()):
        raise ConfigError(f"PUBLIC_URL must look like {example}, got {raw!r}")
    if production and parts.scheme != "https" and parts.hostname not in (*LOCAL_HOSTS, "::1"):
        raise ConfigError(f"PUBLIC_URL must use https when PORTAL_ENV=production, got {raw!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _default_public_url(host: str, port: int) -> str:
    if host in _WILDCARDS:
        host = "127.0.0.1"  # listening everywhere; this machine is the one address sure to work
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def trusted_hosts(public: str, serve_host: str) -> list[str]:
    """The Host names the app answers to: PUBLIC_URL's, the address it listens on, and loopback.

    Any other Host gets 400. Werkzeug cannot match IPv6 literals here, so they are left out.
    """
    hosts = [urlsplit(public).hostname, *LOCAL_HOSTS]
    if serve_host not in _WILDCARDS and ":" not in serve_host:
        hosts.append(serve_host.lower())
    return [h for h in dict.fromkeys(hosts) if h and ":" not in h]


def _trusted_proxy(environ) -> str:
    raw = (environ.get("TRUSTED_PROXY") or "127.0.0.1").strip()
    if raw == "*":
        return raw
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        raise ConfigError(f"TRUSTED_PROXY must be the reverse proxy's IP address as this server sees it "
                          f"(or '*'), got {raw!r}") from None


# Checkout payment methods this gateway knows how to ask for (Stripe's names), with the names
# people know them by (the billing page shows these).
PAYMENT_METHODS = {"card": "card", "alipay": "Alipay", "wechat_pay": "WeChat Pay", "link": "Link", "paypal": "PayPal",
                   "us_bank_account": "US bank account", "sepa_debit": "SEPA debit", "ideal": "iDEAL",
                   "bancontact": "Bancontact", "giropay": "giropay", "eps": "EPS", "p24": "Przelewy24",
                   "klarna": "Klarna", "afterpay_clearpay": "Afterpay", "cashapp": "Cash App Pay"}


def _payment_methods(environ) -> tuple[str, ...]:
    raw = environ.get("STRIPE_PAYMENT_METHODS") or "card"
    methods = tuple(dict.fromkeys(m.strip().lower() for m in raw.split(",") if m.strip()))
    unknown = [m for m in methods if m not in PAYMENT_METHODS]
    if unknown or not methods:
        raise ConfigError(f"STRIPE_PAYMENT_METHODS must be a comma-separated list of {', '.join(PAYMENT_METHODS)}; "
                          f"unknown: {', '.join(unknown) or '(empty)'}")
    return methods


def _stripe(environ, production: bool) -> dict:
    secret = (environ.get("STRIPE_SECRET_KEY") or "").strip()
    webhook = (environ.get("STRIPE_WEBHOOK_SECRET") or "").strip()
    if secret and not webhook:
        # Without it no payment could ever be credited: Checkout would take money and nothing land.
        raise ConfigError("STRIPE_WEBHOOK_SECRET must be set with STRIPE_SECRET_KEY (the signing secret of the "
                          "webhook endpoint, whsec_...; `stripe listen` prints one for local development)")
    if webhook and not all(part.strip().startswith("whsec_") for part in webhook.split(",")):
        raise ConfigError("STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret (whsec_...), or two of them "
                          "separated by a comma while you roll it")
    api_base = (environ.get("STRIPE_API_BASE") or "").strip().rstrip("/")
    if api_base and not api_base.startswith(("http://", "https://")):
        raise ConfigError(f"STRIPE_API_BASE must be an http(s) URL, got {api_base!r}")
    minimum = _usd(environ, "TOPUP_MIN_USD", "5")
    maximum = _usd(environ, "TOPUP_MAX_USD", "500")
    if not 0 < minimum <= maximum:
        raise ConfigError("TOPUP_MIN_USD must be positive and at most TOPUP_MAX_USD")
    presets = []
    for part in (environ.get("TOPUP_PRESETS_USD") or "5,10,20,50,100").split(","):
        try:
            presets.append(parse_usd(part.strip(), what="TOPUP_PRESETS_USD"))
        except InvalidAmount as exc:
            raise ConfigError(str(exc)) from None
    if any(not minimum <= p <= maximum for p in presets):
        raise ConfigError("every TOPUP_PRESETS_USD amount must lie between TOPUP_MIN_USD and TOPUP_MAX_USD")
    for name, value in (("TOPUP_MIN_USD", minimum), ("TOPUP_MAX_USD", maximum), *(("TOPUP_PRESETS_USD", p) for p in presets)):
        if value % 10_000:
            raise ConfigError(f"{name} must be whole cents: Stripe charges in cents")
    return {
        "STRIPE_SECRET_KEY": secret,
        "STRIPE_WEBHOOK_SECRET": webhook,
        "STRIPE_API_BASE": api_base,
        "STRIPE_PAYMENT_METHODS": _payment_methods(environ),
        "TOPUP_MIN": minimum,
        "TOPUP_MAX": maximum,
        "TOPUP_PRESETS": tuple(dict.fromkeys(presets)),
    }


def _branding(environ) -> dict:
    """Branding defaults (the console can override each; see sitesettings.py)."""
    values = {}
    for name, longest in (("SITE_NAME", 60), ("CONTACT_EMAIL", 254), ("OPERATOR_NAME", 200), ("OPERATOR_ADDRESS", 300)):
        value = " ".join((environ.get(name) or "").split())
        if len(value) > longest:
            raise ConfigError(f"{name} must be at most {longest} characters")
        values[name] = value
    if values["CONTACT_EMAIL"] and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", values["CONTACT_EMAIL"]):
        raise ConfigError(f"CONTACT_EMAIL must be an email address, got {values['CONTACT_EMAIL']!r}")
    # Unset, the site is named as its mail is signed (MAIL_FROM's display name), else "Tollgate".
    values["SITE_NAME"] = values["SITE_NAME"] or parseaddr(environ.get("MAIL_FROM") or "")[0].strip() or "Tollgate"
    return values


def _upstream_keys(environ) -> tuple[str, ...]:
    """UPSTREAM_KEYS_SECRET: Fernet keys, comma-separated (the first encrypts, all decrypt); () when unset."""
    from .secretbox import SecretBoxError, parse_keys

    try:
        return parse_keys(environ.get("UPSTREAM_KEYS_SECRET") or "")
    except SecretBoxError as exc:
        raise ConfigError(str(exc)) from None


def call_limits(config) -> tuple[int, int, int]:
    """Calls in flight at once per process: (in all, per account, per key), defaults applied.

    Unset, an account gets a quarter of the process, so no one account can take it all, and a
    key its account's share.
    """
    total = config["PROXY_MAX_INFLIGHT"]
    per_account = min(config["PROXY_MAX_INFLIGHT_PER_ACCOUNT"] or max(1, total // 4), total)
    return total, per_account, min(config["PROXY_MAX_INFLIGHT_PER_KEY"] or per_account, per_account)


MIN_METRICS_TOKEN_LENGTH = 16
LOG_FORMATS = ("text", "json")


def _metrics_token(environ) -> str:
    token = environ.get("METRICS_TOKEN", "").strip()
    if token and (len(token) < MIN_METRICS_TOKEN_LENGTH or any(c.isspace() for c in token)):
        raise ConfigError(f"METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_LENGTH} characters without spaces "
                          "(e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or unset")
    return token


def _log_format(environ) -> str:
    raw = (environ.get("LOG_FORMAT") or "text").strip().lower()
    if raw not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {raw!r}")
    return raw


def _operator_email(environ) -> str:
    raw = (environ.get("OPERATOR_EMAIL") or "").strip()
    # One plain address: it becomes a mail header.
    if raw and not re.fullmatch(r"[^@\s,;<>()\"\\]+@[^@\s,;<>()\"\\]+\.[^@\s,;<>()\"\\.]+", raw):
        raise ConfigError(f"OPERATOR_EMAIL must be one email address, like operator@example.com, got {raw!r}")
    return raw


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
    host = environ.get("HOST", "127.0.0.1")
    port = _int(environ, "PORT", 8000)
    return {
        "PORTAL_ENV": env,
        "SECRET_KEY": _secret_key(environ, env, instance),
        "SQLALCHEMY_DATABASE_URI": database_url(
            environ.get("DATABASE_URL") or f"sqlite:///{instance / 'portal.db'}"
        ),
        "SQLITE_BUSY_TIMEOUT_MS": _int(environ, "SQLITE_BUSY_TIMEOUT_MS", 30_000),
        # Test each pooled connection before use (one round trip): after a Postgres restart or a
        # terminated backend, the dead connection is replaced instead of failing a request.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": environ.get("REDIS_URL", ""),
        "REDIS_PREFIX": environ.get("REDIS_PREFIX", "tollgate:"),
        # /metrics: with a token, scrapers send `Authorization: Bearer <token>`; without one, only
        # loopback peers may scrape (views/health.py). Logs: text lines, or JSON lines (logs.py).
        "METRICS_TOKEN": _metrics_token(environ),
        "LOG_FORMAT": _log_format(environ),
        "SMTP_URL": environ.get("SMTP_URL", ""),
        "MAIL_FROM": environ.get("MAIL_FROM", "Tollgate <no-reply@localhost>"),
        **_branding(environ),
        "MAIL_OUTBOX": environ.get("MAIL_OUTBOX") or str(instance / "outbox"),
        "HOST": host,
        "PORT": port,
        "PUBLIC_URL": public_url(environ.get("PUBLIC_URL", ""), production=production,
                                 default=_default_public_url(host, port)),
        "SERVE_THREADS": threads,
        # Serving processes `serve` forks, sharing one listening socket (serving.py); several
        # processes without REDIS_URL keep the API rate limits in the database so they share them.
        "WORKERS": _int(environ, "WORKERS", os.cpu_count() or 1),
        # On SIGTERM a serving process stops accepting and lets running requests (streams) finish
        # for this long, then closes them; keep it below your service manager's stop timeout.
        "SERVE_GRACE_SECONDS": _seconds(environ, "SERVE_GRACE_SECONDS", 20.0, zero_allowed=True),
        "SERVE_CONNECTION_LIMIT": _int(environ, "SERVE_CONNECTION_LIMIT", threads * 8),
        # Streams beyond this are refused at once with 503, keeping threads free for the portal
        # and for the refusals themselves, instead of queueing inside waitress.
        "PROXY_MAX_INFLIGHT": _int(environ, "PROXY_MAX_INFLIGHT", max(1, threads - 8)),
        # Unset (0): a quarter of PROXY_MAX_INFLIGHT, so out of the box no account can hold more
        # than a quarter of a process's call slots; a key's default is its account's.
        "PROXY_MAX_INFLIGHT_PER_ACCOUNT": _int(environ, "PROXY_MAX_INFLIGHT_PER_ACCOUNT", 0, minimum=0),
        "PROXY_MAX_INFLIGHT_PER_KEY": _int(environ, "PROXY_MAX_INFLIGHT_PER_KEY", 0, minimum=0),
        # Per-minute limits on /v1 calls (portal/apilimits.py); 0: none. The account's request
        # limit is on by default, high enough for any person or agent (50 a second) and low
        # enough that one leaked key cannot flood the gateway; tokens are limited by credit.
        "RATE_LIMIT_RPM_PER_ACCOUNT": _int(environ, "RATE_LIMIT_RPM_PER_ACCOUNT", 3000, minimum=0),
        "RATE_LIMIT_RPM_PER_KEY": _int(environ, "RATE_LIMIT_RPM_PER_KEY", 0, minimum=0),
        "RATE_LIMIT_TPM_PER_ACCOUNT": _int(environ, "RATE_LIMIT_TPM_PER_ACCOUNT", 0, minimum=0),
        "RATE_LIMIT_TPM_PER_KEY": _int(environ, "RATE_LIMIT_TPM_PER_KEY", 0, minimum=0),
        # Where rate-limit counters live without REDIS_URL: "auto" (the database when WORKERS > 1,
        # else this process), or "database" for separate `serve` processes sharing one database.
        "RATE_LIMIT_STORE": _choice(environ, "RATE_LIMIT_STORE", ("auto", "database", "memory")),
        "MAX_CONTENT_LENGTH": max_request,
        # Waitress believes X-Forwarded-For/-Proto only from TRUSTED_PROXY, taking the last
        # TRUSTED_PROXY_HOPS entries (see serving.py); from anyone else it drops them.
        "TRUSTED_PROXY_HOPS": _int(environ, "TRUSTED_PROXY_HOPS", 0, minimum=0),
        "TRUSTED_PROXY": _trusted_proxy(environ),
        "UPSTREAM_CONNECT_TIMEOUT": _seconds(environ, "UPSTREAM_CONNECT_TIMEOUT", 10.0),
        "UPSTREAM_FIRST_BYTE_TIMEOUT": _seconds(environ, "UPSTREAM_FIRST_BYTE_TIMEOUT", 600.0),
        "UPSTREAM_IDLE_TIMEOUT": _seconds(environ, "UPSTREAM_IDLE_TIMEOUT", 120.0),
        "MODEL_CACHE_SECONDS": _seconds(environ, "MODEL_CACHE_SECONDS", 5.0),
        # A hold open this long belongs to a call whose process died: the periodic jobs release it
        # and record the call `abandoned`. It must outlast the longest real call: the first-byte
        # wait plus a long stream (128k output tokens at 20 a second is under two hours).
        "STALE_HOLD_SECONDS": _stale_hold_seconds(environ),
        # Failover (proxy/routing.py): upstreams one call may try before any output, and the
        # circuit breaker's consecutive failures to open and seconds before a probe (proxy/breaker.py).
        "UPSTREAM_MAX_ATTEMPTS": _int(environ, "UPSTREAM_MAX_ATTEMPTS", 3),
        "CIRCUIT_FAILURES": _int(environ, "CIRCUIT_FAILURES", 5),
        "CIRCUIT_COOLDOWN_SECONDS": _seconds(environ, "CIRCUIT_COOLDOWN_SECONDS", 30.0),
        # Fernet key(s) encrypting upstream credentials at rest; unset: derived from SECRET_KEY
        # (portal/secretbox.py). An invalid value refuses to start, naming the setting.
        "UPSTREAM_KEYS_SECRET": _upstream_keys(environ),
        # A stream whose client left is read on for up to this long, off the server's threads, for
        # the usage the upstream reports at its end (docs/billing.md, "Disconnects"); 0: not read.
        "DRAIN_SECONDS": _seconds(environ, "DRAIN_SECONDS", 5.0, zero_allowed=True),
        # Server-tool uses (web search, fetch, file search, code containers) a call is held for when
        # the request sets no limit of its own and the model none either.
        "TOOL_CALLS_CEILING": _int(environ, "TOOL_CALLS_CEILING", 20),
        # Credit granted once when a new account confirms its email: a newcomer to the local demo
        # can make calls at once; production gives nothing unless the operator says so.
        "SIGNUP_CREDIT": _usd(environ, "SIGNUP_CREDIT_USD", "0" if production else "1"),
        **_stripe(environ, production),
        # The expiry job (expire credits, warn 30 and 7 days ahead) runs this often inside `serve`;
        # 0 turns the timer off (run `flask credits expire` from cron instead).
        "JOBS_INTERVAL_SECONDS": _int(environ, "JOBS_INTERVAL_SECONDS", 3600, minimum=0),
        # Privacy jobs in the same run (retention.py): client addresses are erased after this many
        # days; a closed account's personal data this many days after closing (180: a refund paid
        # by hand and a card dispute, which banks take for about 120 days, can still be handled).
        "IP_RETENTION_DAYS": _int(environ, "IP_RETENTION_DAYS", 90),
        "CLOSED_ACCOUNT_RETENTION_DAYS": _int(environ, "CLOSED_ACCOUNT_RETENTION_DAYS", 180, minimum=0),
        # Abuse signals (signals.py): a key used from more than this many client addresses in one
        # UTC day is flagged and its owner mailed once (0: off); sign-ups from one address within
        # this many hours of each other are shown together in the console.
        "KEY_SHARING_ADDRESSES_PER_DAY": _int(environ, "KEY_SHARING_ADDRESSES_PER_DAY", 10, minimum=0),
        "SIGNUP_CLUSTER_HOURS": _int(environ, "SIGNUP_CLUSTER_HOURS", 24),
        # Contact messages are mailed here as they arrive (the console's inbox keeps them too);
        # unset: no mail, and the inbox says so.
        "OPERATOR_EMAIL": _operator_email(environ),
        # Announcements are mailed in the background (by `serve`) at most this many a minute.
        "ANNOUNCE_PER_MINUTE": _int(environ, "ANNOUNCE_PER_MINUTE", 60),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "PREFERRED_URL_SCHEME": "https" if production else "http",
    }
