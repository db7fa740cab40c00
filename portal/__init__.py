"""Tollgate: a self-hostable AI model API gateway with a prepaid-credit portal."""
from pathlib import Path
from typing import Optional

from flask import Flask, request
from jinja2 import BytecodeCache
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, SecurityError

from . import config as config_module
from .database import configure_engine
from .extensions import csrf, db, htmx, login_manager, migrate
from .models import utcnow
from .views.converters import IdConverter

ROOT = Path(__file__).resolve().parent.parent


class _CompiledTemplates(BytecodeCache):
    """Compiled templates kept for the process, shared by every app it makes.

    Jinja compiles each template once per environment, and each app has its own: the test suite
    makes an app per test and spent a fifth of its time compiling the same templates again. A
    bucket is keyed by the template's name and checked against its source's checksum, so an
    edited template is compiled afresh.
    """

    def __init__(self):
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket):
        self._code[bucket.key] = bucket.bytecode_to_string()


_TEMPLATES = _CompiledTemplates()


def create_app(config: Optional[dict] = None) -> Flask:
    """Build the WSGI app: configuration, extensions, blueprints and operator commands.

    `config` overrides what the environment says; `INSTANCE_PATH` in it moves the instance folder.
    """
    overrides = dict(config or {})
    app = Flask(__name__, instance_path=overrides.pop("INSTANCE_PATH", str(ROOT / "instance")),
                template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.update(config_module.load(app.instance_path))
    app.config.update(overrides)
    if "TRUSTED_HOSTS" not in overrides:
        # Any other Host is refused (400): nothing should be built from a name the client picked.
        app.config["TRUSTED_HOSTS"] = config_module.trusted_hosts(app.config["PUBLIC_URL"], app.config["HOST"])
    app.url_map.converters["int"] = IdConverter  # before any route is added

    url = str(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.startswith(("sqlite", "postgresql")):
        # A SQLite file has no server to lose, and a Postgres connection the server closed is found
        # without a round trip (database.configure_engine): pool_pre_ping's SELECT cost each call
        # about 1% of its time on SQLite, and three round trips on Postgres.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {**app.config.get("SQLALCHEMY_ENGINE_OPTIONS", {}),
                                                   "pool_pre_ping": False}
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            configure_engine(engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    htmx.init_app(app)
    login_manager.init_app(app)

    import proxy

    from . import cli, ratelimit, security, stripe_gateway
    from .views import (account, admin, auth, billing, codes, dashboard, errors, keys, pages, refunds, statement,
                        usage, webhooks)

    security.init_app(app)
    from . import i18n
    i18n.init_app(app)  # languages, the `usd`/`balance`/`day`/`minute` filters, POST /language
    app.context_processor(lambda: {"now": utcnow()})
    app.jinja_env.bytecode_cache = _TEMPLATES
    # Form macros as globals, so a block rendered alone for htmx has them too.
    macros = app.jinja_env.get_template("_macros.html").module
    app.jinja_env.globals["field"] = macros.field
    app.jinja_env.globals["error_summary"] = macros.error_summary  # a form's errors, listed at its top
    from .legal import banner as legal_banner
    app.jinja_env.globals["legal_banner"] = legal_banner  # scheduled terms changes (_legal_banner.html)
    app.jinja_env.globals["has_endpoint"] = lambda name: name in app.view_functions  # optional nav links
    ratelimit.init_app(app)
    stripe_gateway.init_app(app)
    for blueprint in (pages.bp, auth.bp, dashboard.bp, keys.bp, usage.bp, account.bp, billing.bp, codes.bp, refunds.bp,
                      statement.bp, webhooks.bp, admin.bp):
        app.register_blueprint(blueprint)
    from .views import status as status_views
    app.register_blueprint(status_views.bp)  # the public /status page
    from .views import health
    app.register_blueprint(health.bp)  # /healthz, /readyz, /metrics
    status_views.init_app(app)  # branding and the maintenance banner in every template; the logo
    app.before_request(auth.require_consent)
    from .views import readonly
    app.before_request(readonly.refuse_changes)  # a suspended person's portal is read-only
    proxy.init_app(app)
    csrf.exempt(proxy.bp)
    csrf.exempt(webhooks.bp)  # Stripe signs its requests; there is no session to forge

    def http_error(exc: HTTPException):
        # Errors outside any blueprint's handlers (unknown routes, 405, 413): JSON under /v1,
        # where clients are SDKs; a readable page everywhere else.
        if proxy.is_api_path(request.path):
            return proxy.http_error(exc)
        return security.untrusted_host_page() if isinstance(exc, SecurityError) else errors.error_page(exc)

    app.register_error_handler(HTTPException, http_error)
    # A stale or missing CSRF token: the form again with a fresh token, or a way back to it (views/csrf.py).
    from flask_wtf.csrf import CSRFError

    from .views import csrf as csrf_views
    app.register_error_handler(CSRFError, csrf_views.csrf_error)
    # The database unreachable: a readable 503 page, not a traceback (the /v1 API has its own, in proxy).
    app.register_error_handler(DBAPIError, errors.database_unavailable)
    app.register_error_handler(PoolTimeout, errors.database_unavailable)
    # X-Forwarded-* is handled by waitress (serving.py), which knows the peer's address and so
    # can believe the headers only from the trusted proxy; there is no ProxyFix here as well.
    cli.register(app)
    from . import logs
    # First of all before-request hooks: the matched URL rule labels the request metric, whatever
    # a later hook answers. The middleware adds request ids and the access line to every response.
    app.before_request_funcs.setdefault(None, []).insert(0, logs.note_route)
    from . import static_files
    static_files.init_app(app)  # WhiteNoise: hashed, gzipped static files and /favicon.ico; `asset()`
    app.wsgi_app = logs.RequestLog(app.wsgi_app)
    return app
