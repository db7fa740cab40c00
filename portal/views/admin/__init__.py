"""The operator's console under /admin: admins only, and only with two-factor turned on.

One blueprint; each feature's views live in a module of this package and add their routes to
`bp`. The guard below runs before every one of them, so a new route cannot forget it (a test
walks the URL map to prove it). Views stay thin: they parse the form, call one domain function
with the acting admin (`actor()`), which writes the audit entry in the same transaction.
"""
import importlib
from dataclasses import dataclass
from typing import Any, Optional

from flask import Blueprint, abort, render_template, request
from flask_login import current_user

from ...audit import Actor, require_reason
from ...extensions import login_manager

bp = Blueprint("admin", __name__, url_prefix="/admin")

# The console's sections, in the order of its navigation: (endpoint, label); labels are lazy
# strings, shown in the language of each request.
SECTIONS: list[tuple[str, Any]] = []
# Feature modules of the console, each adding its routes (and maybe a section) to `bp`.
MODULES = ("dashboards", "users", "upstreams", "models", "model_routes", "legal", "inbox", "site", "signals", "audit")

PER_PAGE = 50


@bp.before_request
def require_admin():
    """Anonymous: the login page. Not an admin: 403. An admin without two-factor: 403 with the way to turn it on."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_admin:
        abort(403)
    if current_user.totp_enabled_at is None:
        # A stolen admin password alone must not open the console: it can move money and read
        # every user's data.
        return render_template("admin/two_factor_needed.html"), 403
    return None


@bp.after_request
def private(response):
    # Pages full of other people's data: never cached by a browser or a proxy on the way.
    response.headers["Cache-Control"] = "no-store"
    return response


def actor() -> Actor:
    """The admin making this request, for the audit log."""
    return Actor.admin(current_user, request.remote_addr)


def reason_from(form, field: str = "reason") -> str:
    """The required reason of an action, trimmed; InvalidInput when it is missing."""
    return require_reason(form.get(field), field)


def confirmed(form) -> bool:
    """A destructive action's confirmation box was ticked (the form cannot be sent without it in a
    browser; this is for everything else)."""
    return form.get("confirm") == "yes"


@dataclass(frozen=True)
class Page:
    """One page of a list, newest first; `has_next` comes from fetching one row more than shown."""

    items: list
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1


def page_number(raw: Optional[str]) -> int:
    try:
        number = int(raw or 1)
    except ValueError:
        return 1
    return min(max(number, 1), 100_000)


def paginate(session, query, number: int, per_page: int = PER_PAGE) -> Page:
    """The `number`th page of `query` (a select of ORM rows or tuples, already ordered)."""
    rows = list(session.execute(query.limit(per_page + 1).offset((number - 1) * per_page)).all())
    items = [row[0] if len(row) == 1 else row for row in rows[:per_page]]
    return Page(items=items, number=number, has_next=len(rows) > per_page)


def section(endpoint: str, label: str) -> None:
    """Add a link to the console's navigation (a module calls this once, at import)."""
    # By endpoint: a lazy label cannot be compared before there is a request to translate it for.
    if all(known != endpoint for known, _label in SECTIONS):
        SECTIONS.append((endpoint, label))


@bp.app_context_processor
def _console_nav() -> dict[str, Any]:
    return {"admin_sections": SECTIONS}


for _module in MODULES:
    importlib.import_module(f"{__name__}.{_module}")
