"""The public status page's figures and the operator's incidents.

Availability of a model over a window is the share of its calls that did not fail for the
gateway's or the upstream's reasons. A failure is a call the gateway or the upstream could not
serve: a timeout, an unreachable or broken upstream, a gateway fault, or an upstream error that
is not the caller's doing (5xx, 429 rate limiting, or the upstream refusing the gateway's own
credentials). A request the upstream rejected as malformed (other 4xx), or a client that
disconnected, is not a failure. Refusals before a call is placed (a bad key, no balance) leave
no usage record and count for nothing.

Latency is the median time until the response began (the first byte of a stream, the status
and headers of a complete response) over the window's successful calls.

The figures are computed from usage records with three grouped queries (index
ix_usage_model_time), and kept per process for CACHE_SECONDS: the page is public.
"""
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from flask import Flask, current_app
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import and_, case, func, or_, select

from . import catalog, richtext
from .audit import Actor, record
from .errors import InvalidInput, NotFound
from .extensions import db
from .models import Incident, UsageRecord, utcnow

CACHE_SECONDS = 15.0
WINDOWS = (("hour", timedelta(hours=1)), ("day", timedelta(days=1)))
# Incidents shown on the public page: the ongoing ones, and those that started this recently.
INCIDENT_DAYS = 90
PUBLIC_INCIDENTS = 50

FAILED_STATUSES = ("upstream_timeout", "upstream_unreachable", "upstream_failed", "upstream_truncated",
                   "gateway_error")
# Upstream answers that are the service's failure, not the caller's: it refused the gateway's
# credentials or account, timed out, or is rate limiting the gateway.
UPSTREAM_FAULTS = (401, 402, 403, 407, 408, 429)
_EXTENSION = "tollgate.status_figures"


def is_failure():
    """SQL: the usage record is a failure of the service (see the module's docstring)."""
    return or_(UsageRecord.status.in_(FAILED_STATUSES),
               and_(UsageRecord.status == "upstream_error",
                    or_(UsageRecord.http_status.is_(None), UsageRecord.http_status >= 500,
                        UsageRecord.http_status.in_(UPSTREAM_FAULTS))))


@dataclass(frozen=True)
class Window:
    calls: int
    failures: int
    median_ms: Optional[int]

    @property
    def availability(self) -> Optional[float]:
        """The share of calls served, 0..1; None without calls (for display only, never money)."""
        return None if self.calls == 0 else (self.calls - self.failures) / self.calls

    def as_json(self) -> dict:
        availability = self.availability
        return {"calls": self.calls, "failures": self.failures,
                "availability": None if availability is None else round(availability, 5),
                "median_latency_ms": self.median_ms}


@dataclass(frozen=True)
class ModelStatus:
    public_id: str
    hour: Window
    day: Window


@dataclass(frozen=True)
class Figures:
    computed_at: datetime
    models: list


def _counts(model_ids: list[int], now: datetime) -> dict:
    hour_since, day_since = now - WINDOWS[0][1], now - WINDOWS[1][1]
    failed = is_failure()
    in_hour = UsageRecord.started_at >= hour_since
    query = (select(UsageRecord.model_id, func.count(),
                    func.sum(case((failed, 1), else_=0)),
                    func.sum(case((in_hour, 1), else_=0)),
                    func.sum(case((and_(in_hour, failed), 1), else_=0)))
             .where(UsageRecord.model_id.in_(model_ids), UsageRecord.started_at >= day_since)
             .group_by(UsageRecord.model_id))
    return {row[0]: tuple(int(n or 0) for n in row[1:]) for row in db.session.execute(query)}


def medians(group, column, since: datetime, *criteria) -> dict[int, int]:
    """The median of `column` per `group` (a usage-record column) over successful calls since `since`
    matching `criteria` (portable SQL: window functions rank the values, and the middle one or two
    are averaged)."""
    ranked = (select(group.label("key"), column.label("ms"),
                     func.row_number().over(partition_by=group, order_by=column).label("n"),
                     func.count().over(partition_by=group).label("c"))
              .where(UsageRecord.started_at >= since, UsageRecord.status == "ok", column.is_not(None), *criteria)
              .subquery())
    query = (select(ranked.c.key, func.avg(ranked.c.ms))
             .where(2 * ranked.c.n >= ranked.c.c, 2 * ranked.c.n <= ranked.c.c + 2)
             .group_by(ranked.c.key))
    return {key: int(round(float(value))) for key, value in db.session.execute(query)}


def _medians(model_ids: list[int], since: datetime) -> dict[int, int]:
    """Each model's median time to first byte of its successful calls since `since`."""
    return medians(UsageRecord.model_id, UsageRecord.first_byte_ms, since, UsageRecord.model_id.in_(model_ids))


def compute(now: Optional[datetime] = None) -> Figures:
    """Availability and median latency of every public model over the last hour and day."""
    now = now or utcnow()
    models = catalog.enabled_models()
    ids = [m.id for m in models]
    counts = _counts(ids, now) if ids else {}
    hour_medians = _medians(ids, now - WINDOWS[0][1]) if ids else {}
    day_medians = _medians(ids, now - WINDOWS[1][1]) if ids else {}
    rows = []
    for model in sorted(models, key=lambda m: m.public_id):
        day_calls, day_failures, hour_calls, hour_failures = counts.get(model.id, (0, 0, 0, 0))
        rows.append(ModelStatus(model.public_id, Window(hour_calls, hour_failures, hour_medians.get(model.id)),
                                Window(day_calls, day_failures, day_medians.get(model.id))))
    return Figures(computed_at=now, models=rows)


class _Cache:
    def __init__(self):
        self.lock = threading.Lock()
        self.figures: Optional[Figures] = None
        self.expires = 0.0


def figures() -> Figures:
    """The figures as computed at most CACHE_SECONDS ago in this process (one computation at a time)."""
    cache: _Cache = current_app.extensions.setdefault(_EXTENSION, _Cache())
    with cache.lock:
        if cache.figures is None or cache.expires <= time.monotonic():
            cache.figures = compute()
            cache.expires = time.monotonic() + CACHE_SECONDS
        return cache.figures


def forget(app: Optional[Flask] = None) -> None:
    """Drop this process's cached figures (the next page computes them afresh)."""
    cache = (app or current_app).extensions.get(_EXTENSION)
    if cache is not None:
        with cache.lock:
            cache.figures = None


# -- incidents -------------------------------------------------------------------------------

MAX_TITLE = 200
MAX_BODY = 20_000


def render(incident: Incident) -> Markup:
    """The incident's Markdown as HTML, for a public page: raw HTML in it is escaped, as in
    legal.render, and links or images with a scripting scheme lead nowhere."""
    return richtext.render(incident.body)


def _clean(title: Optional[str], body: Optional[str]) -> tuple[str, str]:
    title = " ".join((title or "").split())
    body = (body or "").replace("\r\n", "\n").strip()
    if not title:
        raise InvalidInput(_l("Give the incident a title, e.g. “Slow answers from gpt-4o”."), field="title")
    if len(title) > MAX_TITLE:
        raise InvalidInput(_l("Keep the title under %(limit)s characters.", limit=MAX_TITLE), field="title")
    if len(body) > MAX_BODY:
        raise InvalidInput(_l("Keep the description under %(limit)s characters.", limit=f"{MAX_BODY:,}"), field="body")
    return title, body


def _moment(value: Optional[datetime], field: str, now: datetime) -> Optional[datetime]:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidInput(_l("Give the time with its timezone, e.g. 2027-01-31T18:00:00Z."), field=field)
    if value > now + timedelta(minutes=5):
        raise InvalidInput(_l("That time is in the future; incidents are written as they happen."), field=field)
    return value.replace(microsecond=0)


def get(incident_id: int) -> Incident:
    incident = db.session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"There is no incident {incident_id}.")
    return incident


def _snapshot(incident: Incident) -> dict:
    return {"title": incident.title, "body": incident.body, "started_at": incident.started_at,
            "resolved_at": incident.resolved_at}


def add(actor: Actor, title: str, body: str = "", *, started_at: Optional[datetime] = None,
        now: Optional[datetime] = None) -> Incident:
    """Write a new, ongoing incident (started now unless told)."""
    now = now or utcnow()
    title, body = _clean(title, body)
    started_at = _moment(started_at, "started_at", now) or now.replace(microsecond=0)
    incident = Incident(title=title, body=body, started_at=started_at, created_at=now, updated_at=now)
    db.session.add(incident)
    db.session.flush()
    record(actor, "incident.add", "incident", incident.id, after=_snapshot(incident))
    return incident


def edit(actor: Actor, incident_id: int, title: str, body: str, *, started_at: Optional[datetime] = None,
         reason: Optional[str] = None, now: Optional[datetime] = None) -> bool:
    """Change an incident's words (or its start); False when nothing changed."""
    now = now or utcnow()
    incident = get(incident_id)
    title, body = _clean(title, body)
    started_at = _moment(started_at, "started_at", now) or incident.started_at
    if incident.resolved_at is not None and started_at > incident.resolved_at:
        raise InvalidInput(_l("The start must come before the incident was resolved."), field="started_at")
    before = _snapshot(incident)
    if (incident.title, incident.body, incident.started_at) == (title, body, started_at):
        return False
    incident.title, incident.body, incident.started_at, incident.updated_at = title, body, started_at, now
    record(actor, "incident.edit", "incident", incident.id, reason=reason, before=before, after=_snapshot(incident))
    return True


def resolve(actor: Actor, incident_id: int, *, at: Optional[datetime] = None, reason: Optional[str] = None,
            now: Optional[datetime] = None) -> bool:
    """Mark an incident resolved (now unless told); False when it already was."""
    now = now or utcnow()
    incident = get(incident_id)
    if incident.resolved_at is not None:
        return False
    at = _moment(at, "resolved_at", now) or now.replace(microsecond=0)
    if at < incident.started_at:
        raise InvalidInput(_l("An incident cannot be resolved before it started."), field="resolved_at")
    before = _snapshot(incident)
    incident.resolved_at, incident.updated_at = at, now
    record(actor, "incident.resolve", "incident", incident.id, reason=reason, before=before,
           after=_snapshot(incident))
    return True


def all_incidents():
    """A query of every incident, newest first (for the console's pages)."""
    return select(Incident).order_by(Incident.started_at.desc(), Incident.id.desc())


def public_incidents(now: Optional[datetime] = None) -> list[Incident]:
    """What the status page lists: ongoing incidents and those of the last INCIDENT_DAYS, newest first."""
    since = (now or utcnow()) - timedelta(days=INCIDENT_DAYS)
    query = all_incidents().where(or_(Incident.resolved_at.is_(None), Incident.started_at >= since))
    return list(db.session.scalars(query.limit(PUBLIC_INCIDENTS)))
