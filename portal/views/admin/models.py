"""Console: models and prices. List, add, edit, enable or disable; price changes now or at a
moment to come (and their withdrawal); cost prices; import and export of the price list.

Every action calls the same catalog function as `flask models ...`, with the acting admin, which
audits it in the same transaction.
"""
from datetime import datetime, timezone

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ... import audit, catalog, pricefile, routes
from ...database import atomic
from ...errors import DomainError, InvalidInput
from ...extensions import db
from ...i18n import minute
from ...models import CatalogModel, utcnow
from . import actor, bp, confirmed, page_number, paginate, reason_from, section

SETTING_FIELDS = ("upstream", "upstream_model", "max_output_tokens", "context_window", "input_by_reference",
                  "unpriced_tier", "tool_calls_ceiling")
MAX_UPLOAD_BYTES = 2 * 1024 * 1024


def _model(model_id: int) -> CatalogModel:
    model = db.session.get(CatalogModel, model_id)
    if model is None:
        abort(404)
    return model


def _note(form) -> str | None:
    """An optional note for the audit log."""
    note = (form.get("reason") or "").strip()
    if len(note) > 2000:
        raise InvalidInput(_("Keep the note under 2,000 characters."), field="reason")
    return note or None


def _whole(form, name: str, errors: dict, *, required: bool = False, minimum: int = 1) -> int | None:
    text = (form.get(name) or "").strip().replace(",", "").replace("_", "")
    if not text:
        if required:
            errors[name] = _("Give a whole number.")
        return None
    if not text.isdigit() or int(text) < minimum:
        errors[name] = _("Give a whole number, %(minimum)s or more.", minimum=minimum)
        return None
    return int(text)


def _settings(form, errors: dict) -> dict:
    """The settings form's values as set_model takes them (blank numbers: the defaults)."""
    return {
        "upstream_name": (form.get("upstream") or "").strip(),
        "upstream_model": (form.get("upstream_model") or "").strip() or None,
        "max_output_tokens": _whole(form, "max_output_tokens", errors, required=True),
        "context_window": _whole(form, "context_window", errors),
        "input_by_reference": form.get("input_by_reference") or "hold",
        "unpriced_tier": form.get("unpriced_tier") or "refuse",
        "tool_calls_ceiling": _whole(form, "tool_calls_ceiling", errors, minimum=0),
    }


def _effective(form, errors: dict) -> datetime | None:
    """None for "now", or the chosen moment (typed in UTC)."""
    if form.get("effective") != "later":
        return None
    text = (form.get("effective_at") or "").strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        errors["effective_at"] = _("Give the date and time the price takes effect, in UTC, such as 2026-12-01 00:00.")
        return None
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    if moment <= utcnow():
        errors["effective_at"] = _("%(when)s UTC has passed: choose “now” or a moment still to come.", when=minute(moment))
        return None
    return moment


def _field_error(exc: DomainError, errors: dict, default: str) -> None:
    errors[getattr(exc, "field", None) or default] = str(exc)


def _summary(price) -> dict:
    """What the list shows of a price: input, output, and how many other rates it sets."""
    if price is None:
        return {}
    fields = catalog.price_fields(price)
    return {"input": price.input, "output": price.output, "more": len(fields) - 2}


@bp.get("/models")
def models():
    page = paginate(db.session, select(CatalogModel).order_by(CatalogModel.public_id),
                    page_number(request.args.get("page")))
    rows = []
    for model in page.items:
        row = catalog.current_price(model.id)
        planned = catalog.upcoming_prices(model.id)
        rows.append((model, _summary(None if row is None else catalog.as_price(row)),
                     planned[0] if planned else None, _summary(catalog.cost_price_of(model))))
    return render_template("admin/models/index.html", page=page, rows=rows)


def _form_page(template: str, status: int = 200, **context):
    context.setdefault("errors", {})
    context.setdefault("values", {})
    context["upstreams"] = catalog.list_upstreams()
    context["catalog"] = catalog
    return render_template(template, **context), status


@bp.route("/models/new", methods=["GET", "POST"])
def models_new():
    if request.method in ("GET", "HEAD"):
        return _form_page("admin/models/new.html", values={"max_output_tokens": "4096", "effective": "now"})
    form = request.form
    errors: dict = {}
    public_id = (form.get("public_id") or "").strip()
    settings = _settings(form, errors)
    price, price_errors = pricefile.price_from_form(form)
    errors.update(price_errors)
    effective_at = _effective(form, errors)
    if not public_id:
        errors["public_id"] = _("Give the model's id: the name callers send as \"model\".")
    elif db.session.scalar(select(CatalogModel.id).where(CatalogModel.public_id == public_id)) is not None:
        errors["public_id"] = _("A model %(model)s exists already; change it from its page.", model=repr(public_id))
    if not errors:
        try:
            with atomic():
                model, _price = catalog.set_model(public_id, settings.pop("upstream_name"), price, effective_at=effective_at,
                                             actor=actor(), reason=_note(form), **_with_defaults(settings))
        except DomainError as exc:
            _field_error(exc, errors, "public_id")
        else:
            flash(_("Model %(model)s added; its price takes effect %(when)s UTC.", model=model.public_id,
                    when=minute(effective_at)) if effective_at else _("Model %(model)s added.", model=model.public_id))
            return redirect(url_for("admin.models_show", model_id=model.id))
    return _form_page("admin/models/new.html", 422, values=form, errors=errors)


def _with_defaults(settings: dict) -> dict:
    """Settings for set_model: a blank context window or tool calls ceiling means the default."""
    return {name: value for name, value in settings.items()
            if value is not None or name in ("context_window", "tool_calls_ceiling")}


def _show(model: CatalogModel, status: int = 200, **context):
    """The model's page: settings, price in force, planned changes, history, cost price, audit."""
    row = catalog.current_price(model.id)
    price = None if row is None else catalog.as_price(row)
    planned = catalog.upcoming_prices(model.id)
    cost = catalog.cost_price_of(model)
    history = paginate(db.session, catalog.price_history(model.id), page_number(request.args.get("page")), per_page=20)
    defaults = {
        "settings": {"upstream": model.upstream.name, "upstream_model": model.upstream_model,
                     "max_output_tokens": model.max_output_tokens, "context_window": model.context_window or "",
                     "input_by_reference": model.input_by_reference, "unpriced_tier": model.unpriced_tier,
                     "tool_calls_ceiling": "" if model.tool_calls_ceiling is None else model.tool_calls_ceiling},
        "price": {**pricefile.class_texts(price), "extras": pricefile.extras_text(price), "effective": "now"},
        "cost": {**{f"cost_{k}": v for k, v in pricefile.class_texts(cost).items()},
                 "cost_extras": pricefile.extras_text(cost)},
    }
    for name, values in context.pop("values", {}).items():
        defaults[name] = values
    return _form_page("admin/models/show.html", status, model=model, row=row, price=price, planned=planned,
                      cost=cost, history=history, now=utcnow(), values=defaults,
                      routes=routes.routes_of(model), circuits=routes.circuit_states(),
                      entries=audit.for_target("model", model.public_id, limit=20), changes=audit.changes,
                      form_errors=context.pop("form_errors", {}), **context)


@bp.get("/models/<int:model_id>")
def models_show(model_id: int):
    return _show(_model(model_id))


@bp.post("/models/<int:model_id>/settings")
def models_settings(model_id: int):
    model = _model(model_id)
    errors: dict = {}
    settings = _settings(request.form, errors)
    settings["upstream_model"] = settings["upstream_model"] or model.public_id  # blank: the model's id, as when added
    if not errors:
        try:
            with atomic():
                _model_row, changed = catalog.update_model(model.public_id, actor=actor(), reason=_note(request.form),
                                                  **_with_defaults(settings))
        except DomainError as exc:
            _field_error(exc, errors, "upstream")
        else:
            flash(_("Settings saved.") if changed else _("Nothing changed."))
            return redirect(url_for("admin.models_show", model_id=model.id))
    db.session.rollback()
    return _show(_model(model_id), 422, values={"settings": request.form}, form_errors={"settings": errors})


@bp.post("/models/<int:model_id>/price")
def models_price(model_id: int):
    model = _model(model_id)
    errors: dict = {}
    price, price_errors = pricefile.price_from_form(request.form)
    errors.update(price_errors)
    effective_at = _effective(request.form, errors)
    if not errors:
        try:
            with atomic():
                row, changed = catalog.change_price(model.public_id, price, effective_at=effective_at, actor=actor(),
                                                    reason=_note(request.form))
        except DomainError as exc:
            _field_error(exc, errors, "input")
        else:
            if not changed:
                flash(_("That price is already the one in force at that moment; nothing changed."))
            elif effective_at is None:
                flash(_("New price of %(model)s in force from now.", model=model.public_id))
            else:
                flash(_("New price of %(model)s recorded: it takes effect %(when)s UTC.", model=model.public_id,
                        when=minute(effective_at)))
            return redirect(url_for("admin.models_show", model_id=model.id))
    return _show(_model(model_id), 422, values={"price": request.form}, form_errors={"price": errors})


@bp.post("/models/<int:model_id>/cost")
def models_cost(model_id: int):
    model = _model(model_id)
    errors: dict = {}
    clear = request.form.get("clear") == "yes"
    price = None
    if not clear:
        price, errors = pricefile.price_from_form(request.form, prefix="cost_")
    if not errors:
        try:
            with atomic():
                _cost, changed = catalog.set_cost_price(model.public_id, price, actor=actor(), reason=_note(request.form))
        except DomainError as exc:
            _field_error(exc, errors, "cost_input")
        else:
            flash((_("Cost price cleared.") if clear
                   else _("Cost price saved: calls from now on record their upstream cost."))
                  if changed else _("Nothing changed."))
            return redirect(url_for("admin.models_show", model_id=model.id))
    return _show(_model(model_id), 422, values={"cost": request.form}, form_errors={"cost": errors})


@bp.post("/models/<int:model_id>/enabled")
def models_enabled(model_id: int):
    model = _model(model_id)
    enable = request.form.get("enabled") == "yes"
    try:
        reason = reason_from(request.form)
        if not enable and not confirmed(request.form):
            raise InvalidInput(_("Tick the box to confirm: calls to this model will be refused."), field="confirm")
        with atomic():
            _model_row, changed = catalog.set_enabled(model.public_id, enable, actor(), reason)
    except DomainError as exc:
        return _show(model, 422, page_error=str(exc))
    if enable:
        flash(_("%(model)s enabled.", model=model.public_id) if changed
              else _("%(model)s was enabled already; nothing changed.", model=model.public_id))
    else:
        flash(_("%(model)s disabled.", model=model.public_id) if changed
              else _("%(model)s was disabled already; nothing changed.", model=model.public_id))
    return redirect(url_for("admin.models_show", model_id=model.id))


@bp.post("/models/<int:model_id>/prices/<int:price_id>/withdraw")
def models_withdraw(model_id: int, price_id: int):
    model = _model(model_id)
    try:
        reason = reason_from(request.form)
        if not confirmed(request.form):
            raise InvalidInput(_("Tick the box to confirm the withdrawal."), field="confirm")
        with atomic():
            row = catalog.withdraw_price(model.public_id, price_id, actor=actor(), reason=reason)
    except DomainError as exc:
        db.session.rollback()
        return _show(_model(model_id), 422, page_error=str(exc))
    flash(_("The change of %(model)s planned for %(when)s UTC is withdrawn; the price before it stays in force.",
            model=model.public_id, when=minute(row.effective_at)))
    return redirect(url_for("admin.models_show", model_id=model.id))


@bp.route("/models/import", methods=["GET", "POST"])
def models_import():
    if request.method in ("GET", "HEAD"):
        return _form_page("admin/models/import.html", values={"effective": "now"})
    errors: dict = {}
    upload = request.files.get("file")
    name = (upload.filename or "").strip() if upload else ""
    kind = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    text = None
    if not name:
        errors["file"] = _("Choose a price file: a .json file or a .csv price list.")
    elif kind not in ("json", "csv"):
        errors["file"] = _("%(name)s: a price file is a .json file or a .csv price list.", name=name)
    else:
        data = upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            errors["file"] = _("The file is larger than 2 MB; split it.")
        else:
            try:
                text = data.decode("utf-8-sig")  # a spreadsheet's byte-order mark is not a column name
            except UnicodeDecodeError:
                errors["file"] = _("%(name)s is not UTF-8 text; save it as UTF-8.", name=name)
    effective_at = _effective(request.form, errors)
    outcomes = None
    if not errors:
        try:
            with atomic():
                outcomes = pricefile.import_text(text, kind, name, effective_at=effective_at, actor=actor(),
                                                 reason=_note(request.form) or f"imported from {name} in the console")
        except DomainError as exc:
            errors["file"] = str(exc)
    if errors:
        return _form_page("admin/models/import.html", 422, values=request.form, errors=errors,
                          problems=errors.get("file", "").split("\n  "))
    flash(_import_summary(name, outcomes, effective_at))
    return redirect(url_for("admin.models"))


def _import_summary(name: str, outcomes: list[tuple[str, str]], effective_at: datetime | None) -> str:
    """One line for the flash message: how many models, and which changed how (the first few by name)."""
    by_outcome: dict[str, list[str]] = {}
    for public_id, outcome in outcomes:
        by_outcome.setdefault(outcome, []).append(public_id)
    labels = {"created": _("created: %(models)s"), "new price": _("new price: %(models)s"),
              "updated": _("updated: %(models)s")}
    parts = []
    for outcome in ("created", "new price", "updated", "unchanged"):
        ids = by_outcome.get(outcome, [])
        if ids and outcome != "unchanged":
            shown = ", ".join(ids[:10])
            if len(ids) > 10:
                shown = _("%(models)s and %(count)s more", models=shown, count=len(ids) - 10)
            parts.append(labels[outcome] % {"models": shown})
        elif ids:
            parts.append(_("%(count)s unchanged", count=len(ids)))
    summary = ngettext("Imported %(name)s: %(num)s model (%(outcomes)s).",
                       "Imported %(name)s: %(num)s models (%(outcomes)s).", len(outcomes), name=name,
                       outcomes=_("; ").join(parts))
    if effective_at and ("created" in by_outcome or "new price" in by_outcome):
        summary += " " + _("New prices take effect %(when)s UTC.", when=minute(effective_at))
    return summary


@bp.get("/models/export.<kind>")
def models_export(kind: str):
    if kind not in ("json", "csv"):
        abort(404)
    with atomic():  # the export is audited: who took a copy of the price list, and when
        audit.record(actor(), "model.export", "model", "", after={"format": kind})
        text = pricefile.export_json() if kind == "json" else pricefile.export_csv()
    stamp = utcnow().strftime("%Y%m%d-%H%M")
    return Response(text, mimetype="application/json" if kind == "json" else "text/csv",
                    headers={"Content-Disposition": f'attachment; filename="prices-{stamp}.{kind}"'})


section("admin.models", _l("Models"))
