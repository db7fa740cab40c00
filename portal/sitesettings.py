"""Operator settings kept in the database (branding, maintenance), over defaults from the configuration.

A setting changed in the console or with the CLI is a `SiteSetting` row, so every process sees
it. Reading them is on every page and every API call, so each process keeps what it read for at
most `CACHE_SECONDS`; a commit that changed a setting clears that cache in its own process at
once, and other processes see the change within the second.

Branding: the site name, logo, contact address and the operator's identity. Configuration gives
the defaults (SITE_NAME, CONTACT_EMAIL, OPERATOR_NAME, OPERATOR_ADDRESS); a value saved in the
console wins; saving an empty value goes back to the configuration's.
"""
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from flask import Flask, current_app, has_app_context
from flask_babel import lazy_gettext as _l
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from .audit import Actor, record
from .database import engine_beside
from .errors import InvalidInput
from .extensions import db
from .models import SiteSetting, utcnow

CACHE_SECONDS = 1.0
_EXTENSION = "tollgate.site_settings"
_CHANGED = "tollgate_site_settings_changed"

# Branding fields: (setting key, configuration name, label, longest length).
BRANDING_FIELDS = (
    ("site_name", "SITE_NAME", "Site name", 60),
    ("contact_email", "CONTACT_EMAIL", "Contact address", 254),
    ("operator_name", "OPERATOR_NAME", "Operator's legal name", 200),
    ("operator_address", "OPERATOR_ADDRESS", "Operator's postal address", 300),
)
LOGO_KEY = "logo"
LOGO_MAX_BYTES = 256 * 1024
# Raster images only, told by their first bytes, never by the name or the declared type. SVG is
# refused: it can carry script and links, and sanitising it well is a project of its own.
_LOGO_TYPES = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"))
LOGO_MIMETYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_LOGO_NAME = re.compile(r"logo-[0-9a-f]{16}\.(png|jpg|webp)")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class _Cache:
    """One process's copy of the settings rows, with the moment it goes stale."""

    def __init__(self):
        self.lock = threading.Lock()
        self.refreshing = threading.Lock()  # held by the one thread reading the rows again
        self.values: Optional[dict[str, str]] = None
        self.expires = 0.0
        self.generation = 0  # moves on each invalidation: a read begun before it is stale at once
        self.engine = None  # (engine, process id): the reads' own small pool, made on first use


def dispose(app: Flask, close: bool = True) -> None:
    """Drop the settings reads' pooled connections (before a fork; `close=False` after it, as for
    the app's own engines: the parent's connections are not the child's to close)."""
    cache = _cache(app)
    if cache.engine is not None:
        cache.engine[0].dispose(close=close)


def _engine(app: Flask, cache: _Cache):
    """The engine the settings are read through, beside the app's (a burst of page renders as the
    copy went stale took the app's whole pool, each waiting for another). Made again in a forked
    process."""
    found = cache.engine
    if found is not None and found[1] == os.getpid():
        return found[0]
    with cache.lock:
        if cache.engine is None or cache.engine[1] != os.getpid():
            cache.engine = (engine_beside(app, pool_size=1, max_overflow=4), os.getpid())
    return cache.engine[0]


def _cache(app: Flask) -> _Cache:
    return app.extensions.setdefault(_EXTENSION, _Cache())


def invalidate(app: Optional[Flask] = None) -> None:
    """Forget this process's copy: the next read goes to the database."""
    cache = _cache(app or current_app)
    with cache.lock:
        cache.expires, cache.generation = 0.0, cache.generation + 1


def stored() -> dict[str, str]:
    """Every saved setting, as this process last read it (at most CACHE_SECONDS ago)."""
    cache = _cache(current_app)
    now = time.monotonic()
    values = cache.values
    if values is not None and cache.expires > now:
        return values
    # Once there is a copy, one thread reads the rows again and the others keep the copy meanwhile.
    # Each reader takes a second pooled connection while its request may hold one: a burst of
    # requests the moment the copy went stale could otherwise take the whole pool, each waiting for
    # another. Before the first copy every thread reads for itself (waiting for one reader while
    # holding a connection could wait for the pool just the same).
    if values is None:
        return _read(current_app._get_current_object(), cache)
    if not cache.refreshing.acquire(blocking=False):
        return values
    try:
        return _read(current_app._get_current_object(), cache)
    finally:
        cache.refreshing.release()


def _read(app: Flask, cache: _Cache) -> dict[str, str]:
    generation = cache.generation
    # A connection of its own: the read never joins (or is spoilt by) the session's transaction.
    with _engine(app, cache).connect() as connection:
        values = {key: value for key, value in connection.execute(select(SiteSetting.key, SiteSetting.value))}
    with cache.lock:
        cache.values = values
        # A change committed while this read ran may be missing from it: read again next time.
        cache.expires = time.monotonic() + CACHE_SECONDS if cache.generation == generation else 0.0
    return values


def put(key: str, value: str) -> None:
    """Save one setting in the caller's transaction ("" removes it); the cache clears on commit."""
    row = db.session.get(SiteSetting, key)
    if value == "":
        if row is not None:
            db.session.delete(row)
    elif row is None:
        db.session.add(SiteSetting(key=key, value=value, updated_at=utcnow()))
    else:
        row.value, row.updated_at = value, utcnow()
    db.session.flush()
    db.session.info[_CHANGED] = True


def current_value(key: str) -> str:
    """The saved value of `key` read in the caller's transaction (for changes: what it was before)."""
    row = db.session.get(SiteSetting, key)
    return row.value if row is not None else ""


@event.listens_for(Session, "after_commit")
def _settings_committed(session: Session) -> None:
    if session.info.pop(_CHANGED, False) and has_app_context():
        invalidate()


@event.listens_for(Session, "after_rollback")
def _settings_rolled_back(session: Session) -> None:
    session.info.pop(_CHANGED, None)


# -- branding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Branding:
    site_name: str
    contact_email: str
    operator_name: str
    operator_address: str
    logo: str  # the stored logo's file name, or ""

    @property
    def has_identity(self) -> bool:
        return bool(self.operator_name or self.operator_address or self.contact_email)


def branding(values: Optional[dict[str, str]] = None) -> Branding:
    """The branding in force: console values (`values`, by default the stored ones) over configuration defaults."""
    values = stored() if values is None else values
    config = current_app.config
    fields = {key: values.get(key) or config.get(name, "") for key, name, _, _ in BRANDING_FIELDS}
    fields["site_name"] = fields["site_name"] or "Tollgate"
    logo = values.get(LOGO_KEY, "")
    return Branding(**fields, logo=logo if _LOGO_NAME.fullmatch(logo) else "")


def site_name() -> str:
    return branding().site_name


def _check(key: str, label: str, longest: int, raw: Any) -> str:
    value = " ".join(str(raw or "").split())  # one line: these appear in headers, titles and mail
    if len(value) > longest:
        raise InvalidInput(f"Keep the {label.lower()} under {longest} characters.", field=key)
    if key == "contact_email" and value and not _EMAIL.fullmatch(value):
        raise InvalidInput(_l("Give the contact address as name@example.com, or leave it empty."), field=key)
    return value


def save_branding(actor: Actor, form: dict, *, reason: Optional[str] = None) -> bool:
    """Save the branding fields given in `form` (empty: the configuration's value); False if nothing changed."""
    before, after = {}, {}
    checked = {key: _check(key, label, longest, form[key])
               for key, _, label, longest in BRANDING_FIELDS if key in form}
    for key, value in checked.items():
        old = current_value(key)
        if old != value:
            before[key], after[key] = old or None, value or None
            put(key, value)
    if not after and not before:
        return False
    record(actor, "site.branding", "site", "branding", reason=reason, before=before, after=after)
    return True


def logo_folder(app: Optional[Flask] = None) -> Path:
    return Path((app or current_app).instance_path) / "branding"


def _logo_kind(data: bytes) -> str:
    for magic, kind in _LOGO_TYPES:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype")) or b"<svg" in head:
        raise InvalidInput(_l("SVG logos are refused: they can carry scripts. Upload a PNG, JPEG or WebP image."),
                           field="logo")
    raise InvalidInput(_l("The logo must be a PNG, JPEG or WebP image."), field="logo")


def save_logo(actor: Actor, data: bytes, *, reason: Optional[str] = None) -> str:
    """Keep an uploaded logo in the instance folder and use it; its file name (named by its content)."""
    if not data:
        raise InvalidInput(_l("Choose an image file to upload."), field="logo")
    if len(data) > LOGO_MAX_BYTES:
        raise InvalidInput(_l("The logo must be at most %(most)s KB; this one is %(size)s KB.",
                              most=LOGO_MAX_BYTES // 1024, size=len(data) // 1024), field="logo")
    name = f"logo-{hashlib.sha256(data).hexdigest()[:16]}.{_logo_kind(data)}"
    old = current_value(LOGO_KEY)
    if old == name:
        return name
    folder = logo_folder()
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.part"
    temporary.write_bytes(data)
    temporary.replace(folder / name)  # whole or not at all, for a reader in another process
    put(LOGO_KEY, name)
    record(actor, "site.logo", "site", "logo", reason=reason, before={"logo": old or None}, after={"logo": name})
    return name


def remove_logo(actor: Actor, *, reason: Optional[str] = None) -> bool:
    """Stop showing the logo (its file stays, harmless); False if there was none."""
    old = current_value(LOGO_KEY)
    if not old:
        return False
    put(LOGO_KEY, "")
    record(actor, "site.logo", "site", "logo", reason=reason, before={"logo": old}, after={"logo": None})
    return True


def logo_path(name: str) -> Optional[Path]:
    """The file of a stored logo, or None for any other name (nothing else in the folder is served)."""
    if not _LOGO_NAME.fullmatch(name):
        return None
    path = logo_folder() / name
    return path if path.is_file() else None
