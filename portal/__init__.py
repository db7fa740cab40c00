"""Tollgate: a self-hostable AI model API gateway with a prepaid-credit portal."""
from pathlib import Path
from typing import Optional

from flask import Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as config_module
from .database import configure_engine
from .extensions import csrf, db, htmx, login_manager, migrate
from .models import utcnow
from .money import format_usd

ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Optional[dict] = None) -> Flask:
    """Build the WSGI app: configuration, extensions, blueprints and operator commands.

    `config` overrides what the environment says; `INSTANCE_PATH` in it moves the instance folder.
    """
    overrides = dict(config or {})
    app = Flask(__name__, instance_path=overrides.pop("INSTANCE_PATH", str(ROOT / "instance")),
                template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.update(config_module.load(app.instance_path))
    app.config.update(overrides)

    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            configure_engine(engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    htmx.init_app(app)
    login_manager.init_app(app)

    import proxy

    from . import cli, ratelimit, security
    from .views import account, auth, dashboard, errors, keys, pages, usage

    security.init_app(app)
    app.add_template_filter(format_usd, "usd")
    app.context_processor(lambda: {"now": utcnow()})
    # Form macros as globals, so a block rendered alone for htmx has them too.
    app.jinja_env.globals["field"] = app.jinja_env.get_template("_macros.html").module.field
    ratelimit.init_app(app)
    for blueprint in (pages.bp, auth.bp, dashboard.bp, keys.bp, usage.bp, account.bp):
        app.register_blueprint(blueprint)
    app.before_request(auth.require_consent)
    proxy.init_app(app)
    csrf.exempt(proxy.bp)

    def http_error(exc: HTTPException):
        # Errors outside any blueprint's handlers (unknown routes, 405, 413): JSON under /v1,
        # where clients are SDKs; a readable page everywhere else.
        return proxy.http_error(exc) if proxy.is_api_path(request.path) else errors.error_page(exc)

    app.register_error_handler(HTTPException, http_error)
    if app.config["TRUSTED_PROXY_HOPS"]:
        hops = app.config["TRUSTED_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    cli.register(app)
    return app
