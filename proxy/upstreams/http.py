"""OpenAI- and Anthropic-style upstreams over HTTP, through one pooled `requests` session.

Relaying reads `raw.read1()`: it returns whatever bytes have arrived, so each SSE event goes
on as soon as the upstream sends it. (`iter_content(None)` holds back a close-delimited stream
until it ends, and `iter_lines()` adds tens of milliseconds per event.)
"""
import logging
from typing import Iterator, Optional

import requests
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from portal import secretbox
from portal.egress import EgressRefused, GuardedAdapter

from . import UpstreamUnavailable, query_suffix

log = logging.getLogger(__name__)

USER_AGENT = "tollgate-gateway"
# Client headers an upstream may see; everything else (the client's key, cookies, X-Forwarded-*,
# hop-by-hop headers) stays here.
FORWARDED_HEADERS = ("accept", "anthropic-version", "anthropic-beta", "openai-beta")
ANTHROPIC_VERSION = "2023-06-01"
READ_SIZE = 65536


def make_session(pool_size: int, *, allow_private: bool = False) -> requests.Session:
    """A pooled session whose every connection passes the egress check (portal/egress.py) at connect
    time; `allow_private` for upstreams the operator allowed a private host."""
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc credentials picked up from the environment
    adapter = GuardedAdapter(pool_connections=8, pool_maxsize=pool_size, max_retries=0, allow_private=allow_private)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class HttpResponse:
    def __init__(self, response: requests.Response, idle: float):
        self._response = response
        self.status = response.status_code
        self.content_type = response.headers.get("Content-Type", "application/json")
        self.retry_after = response.headers.get("Retry-After")  # passed on with a 429 or 503 (proxy/errors.py)
        # Until the headers came, the read timeout was the time-to-first-byte budget; from now on
        # it bounds the silence between two reads.
        connection = getattr(response.raw, "connection", None)
        if connection is not None and getattr(connection, "sock", None) is not None:
            connection.sock.settimeout(idle)

    def chunks(self) -> Iterator[bytes]:
        raw = self._response.raw
        try:
            while True:
                chunk = raw.read1(READ_SIZE)
                if not chunk:
                    return
                yield chunk
        except (TimeoutError, Urllib3Timeout):
            raise UpstreamUnavailable("the upstream went silent mid-response", timeout=True) from None
        except (OSError, Urllib3Error) as exc:
            raise UpstreamUnavailable(f"the upstream connection broke mid-response ({type(exc).__name__})") from None

    def read(self, limit: int) -> bytes:
        body = bytearray()
        for chunk in self.chunks():
            body += chunk
            if len(body) > limit:
                raise UpstreamUnavailable(f"upstream response larger than {limit} bytes")
        return bytes(body)

    def close(self) -> None:
        self._response.close()

    def shutdown(self) -> None:
        """Wake a read blocked on this response in another thread (the drain's deadline): close()
        would wait for that read to time out first."""
        try:
            self._response.raw.shutdown()
        except (ValueError, RuntimeError, OSError):
            pass  # already released or closed


REFUSED = ("the gateway may not connect to this model's upstream at the address its host has now (see the "
           "operator's log)")
UNREADABLE = "the gateway cannot use this model's upstream credential right now (see the operator's log)"


class HttpUpstream:
    """Sends a call to an upstream's base URL with the upstream's own credential.

    Two pools: one for upstreams that must be on public addresses, one for those the operator
    allowed a private host; both check every connection's address as it is made.
    """

    def __init__(self, session: requests.Session, private_session: Optional[requests.Session] = None):
        self._session = session
        self._private_session = private_session or session

    def send(self, *, protocol: str, base_url: str, api_key: Optional[str], path: str, query: Optional[str],
             body: bytes, client_headers: dict, timeouts, allow_private_host: bool = False,
             upstream_name: str = "") -> HttpResponse:
        if secretbox.is_unreadable(api_key):
            log.error("upstream %s: %s", upstream_name or base_url, secretbox.UNREADABLE_HELP)
            raise UpstreamUnavailable(UNREADABLE)
        headers = {name: value for name, value in client_headers.items() if name in FORWARDED_HEADERS}
        headers.update({"content-type": "application/json", "accept-encoding": "identity",
                        "user-agent": USER_AGENT})
        if protocol == "anthropic":
            headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
            url = f"{base_url}/v1{path}"
            if api_key:
                headers["x-api-key"] = api_key
        else:
            url = f"{base_url}{path}"
            if api_key:
                headers["authorization"] = f"Bearer {api_key}"
        session = self._private_session if allow_private_host else self._session
        try:
            response = session.post(url + query_suffix(query), data=body, headers=headers, stream=True,
                                    allow_redirects=False, timeout=(timeouts.connect, timeouts.first_byte))
        except EgressRefused as exc:
            # Checked at saving too; a name that now resolves elsewhere (DNS rebinding, a changed
            # record) ends here. The detail is for the operator, not the API client.
            log.warning("upstream %s: refused to connect: %s", upstream_name or base_url, exc)
            raise UpstreamUnavailable(REFUSED) from None
        except requests.Timeout:
            raise UpstreamUnavailable("the upstream did not answer in time", timeout=True) from None
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"could not reach the upstream ({type(exc).__name__})") from None
        return HttpResponse(response, timeouts.idle)
