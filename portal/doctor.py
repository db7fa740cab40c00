"""`flask doctor`: check a production setup and say what to fix, one finding per check.

Each check returns a Finding: "ok", a "warning" (works, but probably not what you want) or a
"problem" (people will be hurt by it: forged sessions, nobody able to register, credentials in
plaintext). Findings never quote a secret, a URL with a password, or a driver's error text.

The checks read the app's configuration and, where they must, the database and Redis; they
never change anything. `check_url` (optional) fetches URL/readyz the way a client does, through
the reverse proxy, and compares the scheme and host it ends up at with PUBLIC_URL; the app has
no endpoint that reports what it saw of the request, so the trusted-proxy findings come from
the settings themselves.
"""
import ipaddress
import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import urlsplit

from flask import Flask
from sqlalchemy import text

OK, WARNING, PROBLEM = "ok", "warning", "problem"
GENERATE_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
# Bits of entropy per character a random key has at least (hex: 4; urlsafe base64: 6). A key
# below this per character, or below 128 bits in all, was typed by a person.
_MIN_BITS = 128


@dataclass(frozen=True)
class Finding:
    check: str
    level: str   # OK, WARNING or PROBLEM
    message: str  # what was found and, unless ok, what to do


def _shannon_bits(value: str) -> float:
    counts = Counter(value)
    per_char = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return per_char * len(value)


def secret_key(config) -> Finding:
    key = config.get("SECRET_KEY") or ""
    if len(key) < 32:
        return Finding("secret key", PROBLEM, f"SECRET_KEY has {len(key)} characters: sessions can be forged from a "
                                              f"guessed key. Set a random one of 48+: {GENERATE_KEY}")
    if _shannon_bits(key) < _MIN_BITS or len(set(key)) < 10:
        return Finding("secret key", PROBLEM, "SECRET_KEY is long but not random (too few distinct characters). "
                                              f"Set a random one: {GENERATE_KEY}")
    return Finding("secret key", OK, f"SECRET_KEY is {len(key)} random-looking characters")


def public_url(config) -> Finding:
    url = config.get("PUBLIC_URL") or ""
    parts = urlsplit(url)
    production = config.get("PORTAL_ENV") == "production"
    if not production:
        return Finding("public URL", WARNING, f"PORTAL_ENV is not production (PUBLIC_URL {url}); set "
                                              "PORTAL_ENV=production and PUBLIC_URL=https://your.host")
    if parts.scheme != "https":
        return Finding("public URL", PROBLEM, f"PUBLIC_URL {url} is not https: mail links and cookies would travel "
                                              "in the clear. Put TLS in front and set PUBLIC_URL=https://...")
    if parts.hostname in ("localhost", "127.0.0.1", "::1"):
        return Finding("public URL", PROBLEM, f"PUBLIC_URL {url} names this machine: links in mail will not work "
                                              "for anyone else. Set the name people reach the site by")
    return Finding("public URL", OK, f"PUBLIC_URL {url}")


def smtp(config) -> Finding:
    url = config.get("SMTP_URL") or ""
    production = config.get("PORTAL_ENV") == "production"
    if not url:
        level = WARNING if production else OK
        return Finding("mail", level, f"no SMTP_URL: mail (sign-up confirmations, password resets, receipts) is "
                                      f"written to files in {config.get('MAIL_OUTBOX')}"
                                      + ("; set SMTP_URL=smtp://user:pass@host:587" if production else ""))
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        return Finding("mail", PROBLEM, "SMTP_URL must look like smtp://user:pass@host:587 or smtps://host:465")
    sender = config.get("MAIL_FROM") or ""
    if production and sender.rstrip(">").endswith("@localhost"):
        return Finding("mail", WARNING, f"mail goes out through {parts.hostname} but MAIL_FROM is {sender}: set a "
                                        "sender of your domain, or providers will reject it")
    return Finding("mail", OK, f"mail goes out through {parts.scheme}://{parts.hostname}:{parts.port or ''}".rstrip(":"))


def legal_documents() -> Finding:
    from . import legal
    from .models import LegalKind

    missing = [kind for kind in (LegalKind.TERMS, LegalKind.PRIVACY) if legal.current(kind) is None]
    if missing:
        commands = " and ".join(f"flask --app wsgi {kind.value} publish FILE --version V" for kind in missing)
        return Finding("terms and privacy", PROBLEM, f"no {' and no '.join(k.value for k in missing)} in effect: "
                                                     f"nobody can register until both are published ({commands})")
    return Finding("terms and privacy", OK, "terms of service and privacy policy are published")


def stripe(config) -> Finding:
    secret = config.get("STRIPE_SECRET_KEY") or ""
    production = config.get("PORTAL_ENV") == "production"
    if not secret:
        return Finding("stripe", WARNING, "no STRIPE_SECRET_KEY: people cannot top up by card; only credit you grant "
                                          "(flask credits grant) or gift codes")
    if not config.get("STRIPE_WEBHOOK_SECRET"):
        return Finding("stripe", PROBLEM, "STRIPE_SECRET_KEY without STRIPE_WEBHOOK_SECRET: payments would never be "
                                          "credited. Add the endpoint's signing secret (whsec_...)")
    if production and secret.startswith(("sk_test_", "rk_test_")):
        return Finding("stripe", WARNING, "STRIPE_SECRET_KEY is a test-mode key: no real payment can be taken")
    if not production and secret.startswith(("sk_live_", "rk_live_")):
        return Finding("stripe", WARNING, "a live STRIPE_SECRET_KEY outside production: real cards would be charged")
    return Finding("stripe", OK, f"Stripe {'test' if '_test_' in secret else 'live'} mode, with a webhook secret")


def redis_reachable(config, ping: Optional[Callable[[str], bool]] = None) -> Finding:
    url = config.get("REDIS_URL") or ""
    if not url:
        return Finding("redis", OK, "no REDIS_URL: rate limits are kept in this process or, with several "
                                    "workers, in the database")
    try:
        answered = (ping or _ping)(url)
    except Exception as exc:  # redis errors can quote the URL: name the type only
        return Finding("redis", PROBLEM, f"REDIS_URL does not answer ({type(exc).__name__}): rate limits fall back "
                                         "to each process's own counters. Start Redis or fix REDIS_URL")
    if not answered:
        return Finding("redis", PROBLEM, "REDIS_URL does not answer PING")
    return Finding("redis", OK, "Redis answers")


def _ping(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def trusted_proxy(config) -> Finding:
    hops = config.get("TRUSTED_PROXY_HOPS") or 0
    proxy = config.get("TRUSTED_PROXY") or ""
    host = config.get("HOST") or ""
    production = config.get("PORTAL_ENV") == "production"
    https = urlsplit(config.get("PUBLIC_URL") or "").scheme == "https"
    if hops and proxy == "*":
        return Finding("trusted proxy", PROBLEM, "TRUSTED_PROXY=* believes X-Forwarded-For from anyone: any client can "
                                                 "pose as any address (rate limits, key-sharing signals). Set the proxy's "
                                                 "own address")
    if hops and _wildcard(host) and _loopback(proxy):
        return Finding("trusted proxy", WARNING, f"HOST={host} listens on every interface while the trusted proxy is "
                                                 f"{proxy}: clients can go around the proxy. Set HOST=127.0.0.1")
    if not hops and production and _wildcard(host):
        return Finding("trusted proxy", WARNING, f"HOST={host} with no reverse proxy (TRUSTED_PROXY_HOPS=0): waitress "
                                                 "faces the internet without TLS or slow-client limits. Put nginx in "
                                                 "front (docs/operating.md) and set TRUSTED_PROXY_HOPS=1")
    if not hops and production and https and _loopback(host):
        return Finding("trusted proxy", WARNING, "a proxy serves https in front of this loopback server, but "
                                                 "TRUSTED_PROXY_HOPS=0: every client looks like the proxy's address. "
                                                 "Set TRUSTED_PROXY_HOPS=1 (and TRUSTED_PROXY)")
    if hops:
        return Finding("trusted proxy", OK, f"X-Forwarded-* believed from {proxy} ({hops} hop(s)); HOST={host}")
    return Finding("trusted proxy", OK, f"no reverse proxy configured; HOST={host}")


def served_url(config, url: str, fetch: Optional[Callable[[str], tuple]] = None) -> Finding:
    """Fetch URL/readyz as a client would; compare where it ends up with PUBLIC_URL, and its answer."""
    try:
        final_url, status = (fetch or _fetch)(url.rstrip("/") + "/readyz")
    except Exception as exc:
        return Finding("check URL", PROBLEM, f"{url}/readyz could not be fetched ({type(exc).__name__})")
    public = urlsplit(config.get("PUBLIC_URL") or "")
    reached = urlsplit(final_url)
    if (reached.scheme, reached.netloc) != (public.scheme, public.netloc):
        return Finding("check URL", PROBLEM, f"{url} ends up at {reached.scheme}://{reached.netloc}, not PUBLIC_URL "
                                             f"{public.scheme}://{public.netloc}: fix PUBLIC_URL or the proxy's "
                                             "redirects")
    if status != 200:
        return Finding("check URL", PROBLEM, f"{url}/readyz answered {status}: the app behind it is not ready "
                                             "(see /readyz's checks)")
    return Finding("check URL", OK, f"{url}/readyz reached through {reached.scheme}://{reached.netloc} and ready")


def _fetch(url: str) -> tuple:
    import requests

    response = requests.get(url, timeout=10, allow_redirects=True)
    return response.url, response.status_code


def migrations() -> Finding:
    from alembic.script import ScriptDirectory

    from . import ROOT
    from .extensions import db

    heads = set(ScriptDirectory(str(ROOT / "migrations")).get_heads())
    try:
        with db.engine.connect() as connection:
            current = set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except Exception as exc:
        return Finding("migrations", PROBLEM, f"the database has no migration state ({type(exc).__name__}): run "
                                              "flask --app wsgi db upgrade")
    if current != heads:
        return Finding("migrations", PROBLEM, f"the database is at {', '.join(sorted(current)) or 'nothing'}, the "
                                              f"code at {', '.join(sorted(heads))}: run flask --app wsgi db upgrade")
    return Finding("migrations", OK, f"the database is at the code's head ({', '.join(sorted(heads))})")


def upstream_keys() -> Finding:
    from .extensions import db
    from .secretbox import looks_encrypted

    rows = db.session.execute(text("SELECT name, api_key FROM upstream WHERE api_key IS NOT NULL AND api_key <> '' "
                                   "ORDER BY name")).all()
    plain = [name for name, stored in rows if not looks_encrypted(stored)]
    if plain:
        return Finding("upstream keys", PROBLEM, f"{len(plain)} upstream credential(s) stored in plaintext "
                                                 f"({', '.join(plain)}): run flask --app wsgi upstreams rotate-keys")
    return Finding("upstream keys", OK, f"{len(rows)} upstream credential(s), all encrypted at rest")


def run(app: Flask, *, check_url: Optional[str] = None, ping=None, fetch=None) -> list[Finding]:
    """Every check, in order (within an app context); a check that fails unexpectedly is a problem of its own."""
    config = app.config
    checks = [("secret key", lambda: secret_key(config)), ("public URL", lambda: public_url(config)),
              ("mail", lambda: smtp(config)), ("terms and privacy", legal_documents),
              ("stripe", lambda: stripe(config)), ("redis", lambda: redis_reachable(config, ping)),
              ("trusted proxy", lambda: trusted_proxy(config)), ("migrations", migrations),
              ("upstream keys", upstream_keys)]
    if check_url:
        checks.append(("check URL", lambda: served_url(config, check_url, fetch)))
    findings = []
    for name, check in checks:
        try:
            findings.append(check())
        except Exception as exc:  # the database away, say: report it and go on with the others
            from .extensions import db

            db.session.rollback()
            findings.append(Finding(name, PROBLEM, f"could not be checked ({type(exc).__name__})"))
    return findings
