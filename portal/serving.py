"""Waitress, configured for holding many long streams at once.

Waitress keeps one worker thread per response being written, so an open stream holds a thread
for its whole length. Its defaults (4 threads, 100 connections) stall the fifth concurrent
stream for seconds; we run SERVE_THREADS threads and let the proxy refuse calls beyond
PROXY_MAX_INFLIGHT at once (503) rather than queue them behind running streams.
"""
from flask import Flask
from waitress.server import create_server


def options(config) -> dict:
    return {
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
