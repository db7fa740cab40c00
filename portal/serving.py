"""Waitress, configured for holding many long streams at once.

Waitress keeps one worker thread per response being written, so an open stream holds a thread
for its whole length. Its defaults (4 threads, 100 connections) stall the fifth concurrent
stream for seconds; we run SERVE_THREADS threads and let the proxy refuse calls beyond
PROXY_MAX_INFLIGHT at once (503) rather than queue them behind running streams.

Waitress also decides whose X-Forwarded-* headers to believe, because only it knows the peer's
address: from TRUSTED_PROXY it takes the client address from the last TRUSTED_PROXY_HOPS entries
of X-Forwarded-For, and the scheme from X-Forwarded-Proto; from anyone else it drops them.
"""
from flask import Flask
from waitress.server import create_server


# Not X-Forwarded-Host or -Port: proxies pass the Host header itself (nginx: `Host $host`) and
# most forward a client's own X-Forwarded-Host untouched, so believing it would let any client
# choose the host. X-Forwarded-Proto is set by the proxy, overwriting the client's.
FORWARDED_HEADERS = {"x-forwarded-for", "x-forwarded-proto"}


def proxy_options(config) -> dict:
    """Waitress's proxy settings: trust X-Forwarded-* from TRUSTED_PROXY only, when there are hops."""
    if not config["TRUSTED_PROXY_HOPS"]:
        return {"clear_untrusted_proxy_headers": True}
    return {"trusted_proxy": config["TRUSTED_PROXY"], "trusted_proxy_count": config["TRUSTED_PROXY_HOPS"],
            "trusted_proxy_headers": set(FORWARDED_HEADERS), "clear_untrusted_proxy_headers": True}


def options(config) -> dict:
    return {
        **proxy_options(config),
        "threads": config["SERVE_THREADS"],
        "connection_limit": config["SERVE_CONNECTION_LIMIT"],
        # A little above the app's own limit, so an oversized body gets the app's 413 in the API's
        # JSON shape; waitress's plain-text 413 only stops bodies far beyond it.
        "max_request_body_size": config["MAX_CONTENT_LENGTH"] + 1024 * 1024,
        "asyncore_use_poll": True,  # select() cannot watch more than 1024 sockets
        "ident": "tollgate",
    }


def create(app: Flask, host: str, port: int, **overrides):
    """A waitress server for `app` bound to host:port (port 0 picks a free one)."""
    return create_server(app, host=host, port=port, **{**options(app.config), **overrides})
