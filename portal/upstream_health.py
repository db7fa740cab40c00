"""How each upstream has been doing: calls, error rate, latency and time to first byte over the last
hour, from usage records; and "Test connection", which asks an upstream for its models.

An error is a call that failed for the gateway's or the upstream's reasons, as the public status
page counts them (portal.status.is_failure): a request the upstream rejected as malformed, or a
client that went away, is not the upstream's fault. The latency figures are medians over the
window's successful calls: the whole call (duration) and the time until the response began
(first byte of a stream; status and headers of a complete response).
"""
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

import requests
from flask import current_app
from sqlalchemy import case, func, select

from . import egress, secretbox
from .extensions import db
from .models import CatalogModel, Protocol, Upstream, UsageRecord, utcnow
from .status import is_failure, medians

WINDOW = timedelta(hours=1)
PROBE_CONNECT_SECONDS = 5.0
PROBE_READ_SECONDS = 10.0
PROBE_MAX_BYTES = 4 * 1024 * 1024
ANTHROPIC_VERSION = "2023-06-01"


@dataclass(frozen=True)
class Health:
    calls: int = 0
    errors: int = 0
    p50_latency_ms: Optional[int] = None
    p50_first_byte_ms: Optional[int] = None

    @property
    def error_rate(self) -> Optional[float]:
        """The share of calls that failed, 0..1; None without calls (for display only)."""
        return None if self.calls == 0 else self.errors / self.calls

    @property
    def error_percent(self) -> str:
        rate = self.error_rate
        return "–" if rate is None else f"{rate * 100:.1f}%"


def _medians(column, since: datetime) -> dict[int, int]:
    """Each upstream's median of `column` over its successful calls since `since`."""
    return medians(UsageRecord.upstream_id, column, since)


def recent(now: Optional[datetime] = None, window: timedelta = WINDOW) -> dict[int, Health]:
    """Health of every upstream with calls in the last `window`, by upstream id (others: Health())."""
    since = (now or utcnow()) - window
    counts = db.session.execute(
        select(UsageRecord.upstream_id, func.count(), func.sum(case((is_failure(), 1), else_=0)))
        .where(UsageRecord.started_at >= since).group_by(UsageRecord.upstream_id))
    latency = _medians(UsageRecord.duration_ms, since)
    first_byte = _medians(UsageRecord.first_byte_ms, since)
    return {upstream_id: Health(int(calls), int(errors or 0), latency.get(upstream_id), first_byte.get(upstream_id))
            for upstream_id, calls, errors in counts}


# -- Test connection ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    """What asking an upstream for its models showed; never the credential."""

    ok: bool
    status: Optional[int] = None     # the HTTP status, when it answered
    models: Optional[int] = None     # how many models it listed
    latency_ms: Optional[int] = None
    error: Optional[str] = None      # what went wrong, in words

    def summary(self) -> str:
        if self.ok:
            return (f"OK: HTTP {self.status}, {self.models} model{'s' if self.models != 1 else ''} listed, "
                    f"in {self.latency_ms} ms.")
        answered = f"HTTP {self.status}: " if self.status else ""
        took = f" (after {self.latency_ms} ms)" if self.latency_ms is not None else ""
        return f"Failed: {answered}{self.error}{took}"


def _models_url(upstream: Upstream) -> tuple[str, dict]:
    headers = {"accept": "application/json", "user-agent": "tollgate-gateway", "accept-encoding": "identity"}
    key = upstream.api_key
    if upstream.protocol == Protocol.ANTHROPIC.value:
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if key:
            headers["x-api-key"] = key
        return f"{upstream.base_url}/v1/models", headers
    if key:
        headers["authorization"] = f"Bearer {key}"
    return f"{upstream.base_url}/models", headers


def _error_message(raw: bytes, secret: Optional[str]) -> str:
    from proxy.errors import upstream_message  # scrubs the credential: upstreams echo keys in errors

    message = upstream_message(raw, secret)
    if not message or not message.strip():
        return "the upstream refused the request."
    return message.strip()[:300]


def probe(upstream: Upstream, *, connect_timeout: float = PROBE_CONNECT_SECONDS,
          read_timeout: float = PROBE_READ_SECONDS) -> Probe:
    """Ask `upstream` for its models (GET {base}/models, or {base}/v1/models for Anthropic-style) through
    the same egress guard as calls, with a short timeout. The echo upstream answers here."""
    if upstream.protocol == Protocol.ECHO.value:
        count = db.session.scalar(select(func.count()).select_from(CatalogModel)
                                  .where(CatalogModel.upstream_id == upstream.id))
        return Probe(ok=True, status=200, models=int(count or 0), latency_ms=0)
    if secretbox.is_unreadable(upstream.api_key):
        return Probe(ok=False, error=secretbox.UNREADABLE_HELP[0].upper() + secretbox.UNREADABLE_HELP[1:])
    try:
        egress.check_url_scheme(upstream.base_url or "", production=current_app.config.get("PORTAL_ENV") == "production",
                                allow_private=upstream.allow_private_host)
    except egress.EgressRefused as exc:
        return Probe(ok=False, error=str(exc))
    url, headers = _models_url(upstream)
    session = requests.Session()
    session.trust_env = False
    adapter = egress.GuardedAdapter(max_retries=0, allow_private=upstream.allow_private_host)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        with session, session.get(url, headers=headers, timeout=(connect_timeout, read_timeout), stream=True,
                                  allow_redirects=False) as response:
            raw = response.raw.read(PROBE_MAX_BYTES + 1, decode_content=True)
            status = response.status_code
    except egress.EgressRefused as exc:
        return Probe(ok=False, error=str(exc), latency_ms=took())
    except requests.Timeout:
        return Probe(ok=False, error=f"no answer within {connect_timeout:g} s to connect or {read_timeout:g} s "
                                     "to answer.", latency_ms=took())
    except requests.exceptions.SSLError:
        return Probe(ok=False, error="the TLS handshake failed (is the certificate valid for this host?).",
                     latency_ms=took())
    except requests.RequestException as exc:
        reason = exc.__context__ or exc
        return Probe(ok=False, error=f"could not connect ({type(reason).__name__}).", latency_ms=took())
    latency = took()
    if status != 200:
        return Probe(ok=False, status=status, error=_error_message(raw[:65536], upstream.api_key), latency_ms=latency)
    if len(raw) > PROBE_MAX_BYTES:
        return Probe(ok=False, status=status, error="the models list is larger than expected.", latency_ms=latency)
    try:
        document = json.loads(raw)
        models = document["data"] if isinstance(document, dict) else None
    except (ValueError, KeyError):
        models = None
    if not isinstance(models, list):
        return Probe(ok=False, status=status, latency_ms=latency,
                     error="it answered, but not with a models list (is the base URL right? OpenAI-style ends in "
                           "/v1, Anthropic-style is the host root).")
    return Probe(ok=True, status=status, models=len(models), latency_ms=latency)
