"""Static files: content-hashed names cached for a year, gzip, and /favicon.ico, served by WhiteNoise.

At start the app reads static/ once and names each file by its contents (css/app.css ->
css/app.3f2a9c0d1b7e.css). Templates link `asset("css/app.css")`, so a page's CSS, JS and htmx
come from the browser's cache with no request at all until a file changes, which changes its
name. There is no collectstatic step and nothing is written: the hashed names point at the files
in static/, and their gzip (a few kilobytes in all) is kept in memory. A file changed in static/
while the app runs is served anew after a restart (or at once with FLASK_DEBUG), like templates.
Brotli would save a little more, but needs a compiled package this app does not otherwise need.

The plain names (/static/css/app.css) keep working, from static/ itself, with a short cache:
an old page, a bookmark, an e-mail client that kept a link.
"""
import gzip
import hashlib
import os
import re
import threading
from http import HTTPStatus
from io import BytesIO
from pathlib import Path, PurePosixPath
from wsgiref.headers import Headers

from flask import Flask, current_app, url_for
from whitenoise import WhiteNoise
from whitenoise.responders import Response, StaticFile

from .logs import ROUTE_KEY

URL_PREFIX = "/static/"
YEAR = 365 * 24 * 3600
SHORT = 300  # seconds: the plain names, which change in place
# Text that compresses; images here are already small (svg is text, and compresses well).
COMPRESSIBLE = {".css", ".js", ".svg", ".txt", ".json", ".map", ".html", ".ico"}
FAVICON = "img/favicon.ico"


class _Build:
    """One reading of static/: {name: hashed name}, and each hashed name's gzip, when it is worth having."""

    def __init__(self, root: Path):
        self.manifest: dict[str, str] = {}
        self.gzipped: dict[str, bytes] = {}
        for path in _files(root):
            name = PurePosixPath(path.relative_to(root).as_posix())
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            hashed = str(name.with_name(f"{name.stem}.{digest[:12]}{name.suffix}"))
            self.manifest[str(name)] = hashed
            packed = _gzip(digest, data) if name.suffix in COMPRESSIBLE else None
            if packed is not None:
                self.gzipped[hashed] = packed


def _files(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath, f) for f in sorted(filenames) if not f.startswith(".") and not f.endswith((".gz", ".br"))]
    return found


# Reading and hashing static/ takes a millisecond; compressing it takes longer, and the suite
# makes an app per test: each content is compressed once per process.
_lock = threading.Lock()
_compressed: dict[str, bytes | None] = {}


def _gzip(digest: str, data: bytes) -> bytes | None:
    with _lock:
        if digest not in _compressed:
            packed = gzip.compress(data, compresslevel=9, mtime=0)
            _compressed[digest] = packed if len(packed) < len(data) else None
        return _compressed[digest]


_ACCEPTS_GZIP = re.compile(r"\bgzip\b")


class _GzippedFile(StaticFile):
    """A file of static/ with its gzip held in memory (a few kilobytes): nothing to write anywhere."""

    def __init__(self, path, headers, packed: bytes, stat_cache=None):
        super().__init__(path, [*headers, ("Vary", "Accept-Encoding")], stat_cache=stat_cache)
        self.packed = packed
        [(_anything, _path, plain)] = self.alternatives
        self.packed_headers = [(k, v) for k, v in plain if k != "Content-Length"] + [
            ("Content-Length", str(len(packed))), ("Content-Encoding", "gzip")]

    def get_response(self, method, request_headers):
        if (method in ("GET", "HEAD") and not self.is_not_modified(request_headers)
                and "HTTP_RANGE" not in request_headers
                and _ACCEPTS_GZIP.search(request_headers.get("HTTP_ACCEPT_ENCODING", ""))):
            return Response(HTTPStatus.OK, self.packed_headers, None if method == "HEAD" else BytesIO(self.packed))
        return super().get_response(method, request_headers)


class StaticFiles(WhiteNoise):
    """WhiteNoise over the app: hashed names for a year, plain names briefly, /favicon.ico.

    A hashed name is served from the file in static/ itself (its bytes are that name's).
    """

    FOREVER = YEAR

    def __init__(self, app: Flask):
        self.root = Path(app.static_folder)
        self.hashed_urls: set[str] = set()
        self.packed: dict[str, bytes] = {}  # URL -> its gzip
        self.build = None
        super().__init__(app.wsgi_app, max_age=SHORT, allow_all_origins=False, add_headers_function=self._headers)
        self.refresh()

    def refresh(self) -> None:
        """Read static/ (again) and serve what it holds now."""
        build = _Build(self.root)
        if self.build is not None and build.manifest == self.build.manifest:
            return
        for name, hashed in build.manifest.items():
            urls = [URL_PREFIX + name, URL_PREFIX + hashed] + (["/favicon.ico"] if name == FAVICON else [])
            self.hashed_urls.add(URL_PREFIX + hashed)
            for url in urls:
                if hashed in build.gzipped:
                    self.packed[url] = build.gzipped[hashed]
                self.add_file_to_dictionary(url, str(self.root / name))
        self.build = build

    def get_static_file(self, path, url, stat_cache=None):
        # WhiteNoise's own, with the gzip from memory rather than a .gz file next to the file.
        headers = Headers([])
        self.add_mime_headers(headers, path, url)
        self.add_cache_headers(headers, path, url)
        self.add_headers_function(headers, path, url)
        if url in self.packed:
            return _GzippedFile(path, headers.items(), self.packed[url], stat_cache=stat_cache)
        return StaticFile(path, headers.items(), stat_cache=stat_cache)

    def immutable_file_test(self, path, url):
        return url in self.hashed_urls

    @staticmethod
    def _headers(headers, path, url):
        headers["X-Content-Type-Options"] = "nosniff"
        # An SVG opened on its own is a document: it may run nothing and load nothing.
        headers["Content-Security-Policy"] = "default-src 'none'"

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "") in self.files:
            # The request metric's label (logs.RequestLog), as Flask's static route would give it.
            environ[ROUTE_KEY] = "/favicon.ico" if environ["PATH_INFO"] == "/favicon.ico" else "/static/<path:filename>"
        return super().__call__(environ, start_response)


def asset(name: str) -> str:
    """The URL of a file under static/: its content-hashed name when there is one."""
    files: StaticFiles | None = current_app.extensions.get("tollgate.static")
    if files is not None:
        if current_app.debug:
            files.refresh()  # an edited stylesheet shows on the next page, without a restart
        hashed = files.build.manifest.get(name)
        if hashed is not None:
            return URL_PREFIX + hashed
    return url_for("static", filename=name)


def init_app(app: Flask) -> None:
    """Serve static/ through WhiteNoise and give templates `asset(name)`."""
    files = StaticFiles(app)
    app.extensions["tollgate.static"] = files
    app.wsgi_app = files
    app.jinja_env.globals["asset"] = asset
