"""OpenAI- and Anthropic-style upstreams over HTTP, through pooled urllib3 connections.

urllib3 directly, not requests: the proxy needs none of what requests adds per call (cookies,
environment proxies and .netrc, redirects, hooks, its own header merging), and that cost about as
much CPU as the upstream exchange itself (docs/performance.md). Every connection still passes the
egress check as it is made (portal.egress's pool classes).

Relaying reads `read1()`: it returns whatever bytes have arrived, so each SSE event goes on as
soon as the upstream sends it.
"""
import logging
from typing import Iterator, Optional

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as Urllib3Timeout

from portal import secretbox
from portal.egress import EgressRefused, guarded_pools

from . import UpstreamUnavailable, query_suffix

log = logging.getLogger(__name__)

USER_AGENT = "tollgate-gateway"
# Client headers an upstream may see; everything else (the client's key, cookies, X-Forwarded-*,
# hop-by-hop headers) stays here.
FORWARDED_HEADERS = ("accept", "anthropic-version", "anthropic-beta", "openai-beta")
ANTHROPIC_VERSION = "2023-06-01"
READ_SIZE = 65536


def make_pool(pool_size: int, *, allow_private: bool = False) -> urllib3.PoolManager:
    """Pooled connections whose every connection passes the egress check (portal/egress.py) at connect
    time; `allow_private` for upstreams the operator allowed a private host. `pool_size` per host
    (below the serving threads, urllib3 would discard the connections of calls beyond it)."""
    manager = urllib3.PoolManager(num_pools=8, maxsize=pool_size, retries=False)
    manager.pool_classes_by_scheme = guarded_pools(allow_private)
    return manager


class HttpResponse:
    def __init__(self, response: urllib3.BaseHTTPResponse, idle: float):
        self._response = response
        self.status = response.status
        self.content_type = response.headers.get("Content-Type", "application/json")
        self.retry_after = response.headers.get("Retry-After")  # passed on with a 429 or 503 (proxy/errors.py)
        # Until the headers came, the read timeout was the time-to-first-byte budget; from now on
        # it bounds the silence between two reads.
        connection = getattr(response, "connection", None)
        if connection is not None and getattr(connection, "sock", None) is not None:
            connection.sock.settimeout(idle)

    def chunks(self) -> Iterator[bytes]:
        raw = self._response
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
        """Done with the response: a connection read to its end is back in the pool already (urllib3
        releases it then); one left mid-response is closed."""
        self._response.close()
        self._response.release_conn()

    def shutdown(self) -> None:
        """Wake a read blocked on this response in another thread (the drain's deadline): close()
        would wait for that read to time out first."""
        try:
            self._response.shutdown()
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

    def __init__(self, pool: urllib3.PoolManager, private_pool: Optional[urllib3.PoolManager] = None):
        self._pool = pool
        self._private_pool = private_pool or pool

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
        pool = self._private_pool if allow_private_host else self._pool
        try:
            response = pool.urlopen("POST", url + query_suffix(query), body=body, headers=headers, redirect=False,
                                    retries=False, preload_content=False, decode_content=False,
                                    timeout=urllib3.Timeout(connect=timeouts.connect, read=timeouts.first_byte))
        except EgressRefused as exc:
            # Checked at saving too; a name that now resolves elsewhere (DNS rebinding, a changed
            # record) ends here. The detail is for the operator, not the API client.
            log.warning("upstream %s: refused to connect: %s", upstream_name or base_url, exc)
            raise UpstreamUnavailable(REFUSED) from None
        except NewConnectionError as exc:  # urllib3 makes it a ConnectTimeoutError too: refused is no timeout
            raise UpstreamUnavailable(f"could not reach the upstream ({type(exc).__name__})") from None
        except (Urllib3Timeout, TimeoutError):
            raise UpstreamUnavailable("the upstream did not answer in time", timeout=True) from None
        except (Urllib3Error, OSError) as exc:
            raise UpstreamUnavailable(f"could not reach the upstream ({type(exc).__name__})") from None
        return HttpResponse(response, timeouts.idle)
