"""Console: upstreams. A list with the last hour's health; add, edit (base URL, dialect, credential
replaced or removed, private-host allowance, chat completions only), enable or disable, and "Test connection".

Every change calls the same catalog function as `flask upstreams ...` with the acting admin, which
audits it in the same transaction; a change clears this process's model cache when it commits
(other processes follow within MODEL_CACHE_SECONDS). A credential is never shown again after it
is saved, not even back in a form that failed.
"""
from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from ... import audit, catalog, dialects, routes, secretbox, upstream_health
from ...database import atomic
from ...errors import DomainError, InvalidInput
from ...extensions import db
from ...i18n import number
from ...models import CatalogModel, Protocol, Upstream
from . import actor, bp, confirmed, page_number, paginate, reason_from, section

PROTOCOLS = (("openai", _l("OpenAI-style (/v1/chat/completions, /v1/responses …)")),
             ("anthropic", _l("Anthropic-style (/v1/messages)")), ("echo", _l("Echo (built in, for trying things out)")))
MAX_KEY_LENGTH = 4096


def _upstream(upstream_id: int) -> Upstream:
    upstream = db.session.get(Upstream, upstream_id)
    if upstream is None:
        abort(404)
    return upstream


def _note(form) -> str | None:
    """An optional note for the audit log."""
    note = (form.get("reason") or "").strip()
    if len(note) > 2000:
        raise InvalidInput(_("Keep the note under 2,000 characters."), field="reason")
    return note or None


def _credential(form) -> str | None:
    """The new credential typed in the form ('' never: a blank box means none)."""
    key = (form.get("api_key") or "").strip()
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(_("That credential is longer than %(max)s characters; check what was pasted.",
                             max=number(MAX_KEY_LENGTH)), field="api_key")
    if any(c.isspace() for c in key):
        raise InvalidInput(_("A credential has no spaces or line breaks; check what was pasted."), field="api_key")
    return key or None


def _credential_state(upstream: Upstream) -> str:
    if secretbox.is_unreadable(upstream.api_key):
        return "unreadable"
    return "set" if upstream.api_key else "not set"


def _errors_of(exc: DomainError, default: str) -> dict:
    return {getattr(exc, "field", None) or default: str(exc)}


def _dialect_choices() -> list[tuple[str, str]]:
    return [(d, d) for d in dialects.DIALECTS]


def _chat_only(form, protocol: str) -> bool:
    """The "chat completions only" box; only an OpenAI-style upstream can have it (catalog.add_upstream)."""
    ticked = form.get("chat_only") == "yes"
    if ticked and protocol != Protocol.OPENAI.value:
        raise InvalidInput(_("Only an OpenAI-style upstream can be chat completions only: an Anthropic-style one "
                             "speaks the Messages API, and the echo upstream every route. Untick the box."),
                           field="chat_only")
    return ticked


def chat_only_reason(upstream: Upstream) -> str | None:
    """Why an upstream has no Responses API (catalog.UpstreamInfo.chat_only): "dialect", "flag" or None."""
    if upstream.protocol != Protocol.OPENAI.value:
        return None
    if upstream.dialect in dialects.CHAT_ONLY:
        return "dialect"
    return "flag" if upstream.chat_only else None


@bp.get("/upstreams")
def upstreams():
    page = paginate(db.session, select(Upstream).order_by(Upstream.name), page_number(request.args.get("page")))
    ids = [u.id for u in page.items]
    models = dict(db.session.execute(select(CatalogModel.upstream_id, func.count())
                                     .where(CatalogModel.upstream_id.in_(ids)).group_by(CatalogModel.upstream_id)).all()
                  ) if ids else {}
    return render_template("admin/upstreams/index.html", page=page, health=upstream_health.recent(),
                           empty=upstream_health.Health(), models=models, credential_state=_credential_state,
                           circuits=routes.circuit_states(), chat_only_reason=chat_only_reason)


def _new_page(status: int = 200, values=None, errors=None):
    values = dict(values or {"protocol": "openai"})
    values.pop("api_key", None)  # never sent back, not even what was just typed
    return render_template("admin/upstreams/new.html", values=values, errors=errors or {}, protocols=PROTOCOLS,
                           dialects=_dialect_choices(), chat_only_dialects=dialects.CHAT_ONLY), status


@bp.route("/upstreams/new", methods=["GET", "POST"])
def upstreams_new():
    if request.method in ("GET", "HEAD"):
        return _new_page()
    form = request.form
    try:
        protocol = form.get("protocol") or ""
        echo = protocol == Protocol.ECHO.value
        with atomic():
            upstream = catalog.add_upstream(
                form.get("name") or "", protocol, None if echo else (form.get("base_url") or "").strip() or None,
                None if echo else _credential(form), form.get("dialect") or None,
                allow_private_host=form.get("allow_private_host") == "yes", chat_only=_chat_only(form, protocol),
                actor=actor(), reason=_note(form))
            name, upstream_id = upstream.name, upstream.id
    except DomainError as exc:
        db.session.rollback()
        return _new_page(422, form, _errors_of(exc, "name"))
    flash(_("Upstream %(upstream)s added. Its credential is stored encrypted and is not shown again. "
            "Test the connection below, then add models served by it.", upstream=name))
    return redirect(url_for("admin.upstreams_show", upstream_id=upstream_id), code=303)


def _show(upstream: Upstream, status: int = 200, values=None, errors=None, switch_errors=None):
    defaults = {"base_url": upstream.base_url or "", "dialect": upstream.dialect, "credential": "keep",
                "allow_private_host": "yes" if upstream.allow_private_host else "",
                "chat_only": "yes" if upstream.chat_only else ""}
    if values is not None:
        defaults = {k: v for k, v in values.items() if k != "api_key"}
    models = list(db.session.scalars(select(CatalogModel).where(CatalogModel.upstream_id == upstream.id)
                                     .order_by(CatalogModel.public_id).limit(50)))
    return render_template("admin/upstreams/show.html", upstream=upstream, values=defaults, errors=errors or {},
                           dialects=_dialect_choices(), credential=_credential_state(upstream),
                           health=upstream_health.recent().get(upstream.id, upstream_health.Health()),
                           models=models, entries=audit.for_target("upstream", upstream.name, limit=20),
                           changes=audit.changes, switch_errors=switch_errors or {},
                           chat_only=chat_only_reason(upstream), chat_only_dialects=dialects.CHAT_ONLY), status


@bp.get("/upstreams/<int:upstream_id>")
def upstreams_show(upstream_id: int):
    return _show(_upstream(upstream_id))


@bp.post("/upstreams/<int:upstream_id>/edit")
def upstreams_edit(upstream_id: int):
    upstream = _upstream(upstream_id)
    form = request.form
    echo = upstream.protocol == Protocol.ECHO.value
    try:
        choice = form.get("credential") or "keep"
        if choice not in ("keep", "replace", "remove"):
            raise InvalidInput(_("Choose to keep, replace or remove the credential."), field="credential")
        api_key = None
        if not echo and choice == "replace":
            api_key = _credential(form)
            if api_key is None:
                raise InvalidInput(_("Paste the new credential, or choose to keep the current one."), field="api_key")
        elif not echo and choice == "remove":
            api_key = ""
        base_url = None if echo else (form.get("base_url") or "").strip()
        if base_url is not None and base_url == (upstream.base_url or ""):
            base_url = None
        if not echo and not base_url and base_url is not None:
            raise InvalidInput(_("Give the base URL."), field="base_url")
        dialect = form.get("dialect") or None
        if dialect == upstream.dialect:
            dialect = None
        allow = None if echo else form.get("allow_private_host") == "yes"
        if allow == upstream.allow_private_host:
            allow = None
        chat_only = _chat_only(form, upstream.protocol) if upstream.protocol == Protocol.OPENAI.value else None
        if chat_only == upstream.chat_only:
            chat_only = None
        if base_url is None and api_key is None and dialect is None and allow is None and chat_only is None:
            flash(_("Nothing changed."))
            return redirect(url_for("admin.upstreams_show", upstream_id=upstream_id), code=303)
        with atomic():
            catalog.update_upstream(upstream.name, base_url, api_key, dialect, allow_private_host=allow,
                                    chat_only=chat_only, actor=actor(), reason=_note(form))
    except DomainError as exc:
        db.session.rollback()
        return _show(_upstream(upstream_id), 422, values=form, errors=_errors_of(exc, "base_url"))
    message = _("Upstream saved.")
    if api_key:
        message += " " + _("The new credential is stored encrypted and is not shown again.")
    elif api_key == "":
        message += " " + _("The credential is removed.")
    flash(message)
    return redirect(url_for("admin.upstreams_show", upstream_id=upstream_id), code=303)


def _switch(upstream_id: int, enabled: bool):
    upstream = _upstream(upstream_id)
    form = request.form
    try:
        reason = reason_from(form)
        if not enabled and not confirmed(form):
            raise InvalidInput(_("Tick the box to confirm: callers of its models get errors until you enable it "
                                 "again."), field="confirm")
        with atomic():
            _upstream_row, changed = catalog.set_upstream_enabled(upstream.name, enabled, actor=actor(), reason=reason)
    except DomainError as exc:
        db.session.rollback()
        return _show(_upstream(upstream_id), 422, switch_errors=_errors_of(exc, "reason"))
    if not changed:
        flash(_("%(upstream)s was already enabled; nothing changed.", upstream=upstream.name) if enabled
              else _("%(upstream)s was already disabled; nothing changed.", upstream=upstream.name))
    elif enabled:
        flash(_("%(upstream)s is enabled: its models answer again.", upstream=upstream.name))
    else:
        flash(_("%(upstream)s is disabled: its models answer “unavailable” until you enable it again "
                "(at once here; other running servers within a few seconds).", upstream=upstream.name))
    return redirect(url_for("admin.upstreams_show", upstream_id=upstream_id), code=303)


@bp.post("/upstreams/<int:upstream_id>/disable")
def upstreams_disable(upstream_id: int):
    return _switch(upstream_id, False)


@bp.post("/upstreams/<int:upstream_id>/enable")
def upstreams_enable(upstream_id: int):
    return _switch(upstream_id, True)


@bp.post("/upstreams/<int:upstream_id>/test")
def upstreams_test(upstream_id: int):
    """Ask the upstream for its models now, and say what happened on its page (nothing is changed)."""
    upstream = _upstream(upstream_id)
    result = upstream_health.probe(upstream)
    db.session.rollback()
    flash(_("Test connection to %(upstream)s: %(result)s", upstream=upstream.name, result=result.summary()))
    return redirect(url_for("admin.upstreams_show", upstream_id=upstream_id), code=303)


section("admin.upstreams", _l("Upstreams"))
