"""Links that leave the request: absolute links from PUBLIC_URL, and redirect targets kept on this site.

The request's Host header is the client's choice (`Host: attacker.example` once put the
attacker's address in password-reset mail), so absolute links are built from the configured
PUBLIC_URL only.
"""
from urllib.parse import unquote, urlsplit

from flask import current_app

MAX_TARGET_LENGTH = 2000


def site_root() -> str:
    """PUBLIC_URL: scheme and host people reach the site by, without a trailing slash."""
    return current_app.config["PUBLIC_URL"]


def public_url(endpoint: str, **values) -> str:
    """An absolute link to `endpoint` on PUBLIC_URL, for mail and pages; works outside requests too."""
    parts = urlsplit(site_root())
    adapter = current_app.url_map.bind(parts.netloc, url_scheme=parts.scheme)
    return adapter.build(endpoint, values, force_external=True)


def _plain(text: str) -> bool:
    # Browsers drop tab, CR and LF anywhere in a URL and read a backslash as a slash, so
    # "/\t/evil.com" and "/\\evil.com" both become "//evil.com". Anything outside printable
    # ASCII (controls, spaces, lookalike slashes such as U+FF0F) has no place in our own paths.
    return all("!" <= c <= "~" and c != "\\" for c in text)


def is_local_path(target: str | None) -> bool:
    """True when `target` is a path on this site: one leading slash, then no scheme, host or odd characters.

    Checked as given and once percent-decoded, since some clients decode before following.
    """
    if not target or len(target) > MAX_TARGET_LENGTH:
        return False
    for candidate in (target, unquote(target)):
        if not _plain(candidate) or not candidate.startswith("/") or candidate.startswith("//"):
            return False
        try:
            parts = urlsplit(candidate)
        except ValueError:
            return False
        if parts.scheme or parts.netloc:
            return False
    return True
