"""API keys: list, create (shown once), rename, revoke, limits. htmx-enhanced, plain forms underneath."""
import json
from datetime import datetime, time, timezone

from flask import Blueprint, abort, current_app, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import DateField, IntegerField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import Length, Optional as Optional_
from wtforms.widgets import CheckboxInput, ListWidget

from .. import apikeys, apilimits, catalog, config, links, security
from ..database import atomic
from ..errors import DomainError, InvalidInput
from ..extensions import db
from ..money import format_usd, parse_usd
from ..models import User
from .htmx import redirect_to, render

bp = Blueprint("keys", __name__, url_prefix="/keys")
PAGE = "keys/index.html"


class NewKeyForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=apikeys.MAX_NAME_LENGTH)],
                       render_kw={"placeholder": "laptop, CI, claude-code…"})


class RenameForm(FlaskForm):
    name = StringField("Name", validators=[Length(min=1, max=apikeys.MAX_NAME_LENGTH)])


class LimitsForm(FlaskForm):
    allowed_models = SelectMultipleField("Allowed models (none ticked: all models)", choices=[],
                                         widget=ListWidget(prefix_label=False), option_widget=CheckboxInput())
    spend_cap_total = StringField("Total spend cap, USD", validators=[Optional_()],
                                  render_kw={"inputmode": "decimal", "placeholder": "no cap"})
    spend_cap_monthly = StringField("Monthly spend cap, USD (calendar month, UTC)", validators=[Optional_()],
                                    render_kw={"inputmode": "decimal", "placeholder": "no cap"})
    expires_on = DateField("Expires after (UTC date)", validators=[Optional_()])
    ip_allowlist = TextAreaField("IP allow-list (addresses or CIDR ranges, one per line)",
                                 validators=[Optional_(), Length(max=4000)],
                                 render_kw={"placeholder": "any address", "rows": 3})
    max_concurrency = IntegerField("Calls in progress at once", validators=[Optional_()],
                                   render_kw={"inputmode": "numeric"})
    max_rpm = IntegerField("Requests per minute", validators=[Optional_()], render_kw={"inputmode": "numeric"})
    max_tpm = IntegerField("Tokens per minute", validators=[Optional_()], render_kw={"inputmode": "numeric"})


def _keys_page(status=200, **extra):
    keys = apikeys.list_for(current_user)
    return render(PAGE, "keys", status, keys=keys, form=extra.pop("form", None) or NewKeyForm(formdata=None), month_spend={
        k.id: apikeys.spent_this_month(k) for k in keys}, **extra)


def _own(key_id: int):
    try:
        return apikeys.find_for(db.session.get(User, current_user.id), key_id)
    except DomainError:
        abort(404)


@bp.get("/")
@login_required
def index():
    return _keys_page()


@bp.post("/")
@login_required
def create():
    form = NewKeyForm()
    if not form.validate_on_submit():
        return _keys_page(422, form=form)
    try:
        with atomic():
            key, plaintext = apikeys.issue(db.session.get(User, current_user.id), form.name.data)
            key_name = key.name
    except InvalidInput as exc:
        form.name.errors.append(str(exc))
        return _keys_page(422, form=form)
    # The plaintext is in this page (full or htmx fragment) and nowhere else, ever: keep it out of caches.
    return security.no_store(_keys_page(new_key=plaintext, new_key_name=key_name, base_url=links.site_root(),
                                        example_model=next((m.public_id for m in catalog.enabled_models()), "echo-1")))


@bp.post("/<int:key_id>/rotate")
@login_required
def rotate(key_id: int):
    """A new key with the same name and limits, the old one revoked: one click from a key flagged as shared."""
    key = _own(key_id)
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        with atomic():
            new, plaintext = apikeys.rotate(key)
            key_name = new.name
    except InvalidInput as exc:
        return _keys_page(422, rotate_error=str(exc))
    # Shown once, as at creation: kept out of caches.
    return security.no_store(_keys_page(new_key=plaintext, new_key_name=key_name, base_url=links.site_root(),
                                        example_model=next((m.public_id for m in catalog.enabled_models()), "echo-1")))


@bp.route("/<int:key_id>/rename", methods=["GET", "POST"])
@login_required
def rename(key_id: int):
    key = _own(key_id)
    form = RenameForm(name=key.name)
    if form.validate_on_submit():
        try:
            with atomic():
                apikeys.rename(key, form.name.data)
        except InvalidInput as exc:
            form.name.errors.append(str(exc))
        else:
            return redirect_to(url_for("keys.index"))
    return render("keys/rename.html", "form", 422 if form.errors else 200, key=key, form=form)


@bp.route("/<int:key_id>/revoke", methods=["GET", "POST"])
@login_required
def revoke(key_id: int):
    key = _own(key_id)
    if request.method == "POST" and FlaskForm().validate_on_submit():
        with atomic():
            apikeys.revoke(key)
        return redirect_to(url_for("keys.index"))
    return render("keys/revoke.html", "confirm", key=key, form=FlaskForm())


def _usd_or_none(value: str, field) -> int | None:
    if not value or not value.strip():
        return None
    try:
        return parse_usd(value, what=field.label.text.split(",")[0].lower())
    except DomainError as exc:
        field.errors.append(str(exc))
        return None


@bp.route("/<int:key_id>/limits", methods=["GET", "POST"])
@login_required
def limits(key_id: int):
    key = _own(key_id)
    form = LimitsForm()
    form.allowed_models.choices = [(m.public_id, m.public_id) for m in catalog.enabled_models()]
    # A key's owner may lower the operator's per-key limits, never raise them.
    account = key.user.account
    overrides = apilimits.overrides_of(key, account)
    total, per_account, per_key = config.call_limits(current_app.config)
    most = apilimits.concurrency(per_account, per_key, total, overrides)[1]
    most_rpm, most_tpm = apilimits.owner_ceiling(current_app.config, overrides)
    for box, ceiling in ((form.max_rpm, most_rpm), (form.max_tpm, most_tpm)):
        box.render_kw = {**box.render_kw, "min": 1, **({"max": ceiling} if ceiling else {}),
                         "placeholder": f"{ceiling:,}" if ceiling else "no limit"}
    form.max_concurrency.render_kw = {**form.max_concurrency.render_kw, "min": 1, "max": most,
                                      "placeholder": str(most)}
    if request.method == "GET":
        form.allowed_models.data = sorted(json.loads(key.allowed_models)) if key.allowed_models else []
        form.spend_cap_total.data = format_usd(key.spend_cap_total)[1:] if key.spend_cap_total else ""
        form.spend_cap_monthly.data = format_usd(key.spend_cap_monthly)[1:] if key.spend_cap_monthly else ""
        form.expires_on.data = key.expires_at.date() if key.expires_at else None
        form.ip_allowlist.data = key.ip_allowlist or ""
        form.max_concurrency.data = key.max_concurrency
        form.max_rpm.data, form.max_tpm.data = key.max_rpm, key.max_tpm
    elif form.validate_on_submit():
        concurrency = form.max_concurrency.data
        if concurrency is not None and not 1 <= concurrency <= most:
            form.max_concurrency.errors.append(f"Type a whole number from 1 to {most}, or leave it empty for {most}.")
        total = _usd_or_none(form.spend_cap_total.data, form.spend_cap_total)
        monthly = _usd_or_none(form.spend_cap_monthly.data, form.spend_cap_monthly)
        expires = (datetime.combine(form.expires_on.data, time.max, tzinfo=timezone.utc)
                   if form.expires_on.data else None)
        if not form.errors:
            try:
                with atomic():
                    apikeys.set_limits(key, apikeys.Limits(
                        allowed_models=form.allowed_models.data or None, ip_allowlist=form.ip_allowlist.data,
                        spend_cap_total=total, spend_cap_monthly=monthly, expires_at=expires,
                        max_concurrency=concurrency))
                    apilimits.set_own(current_app.config, key, account, rpm=form.max_rpm.data, tpm=form.max_tpm.data)
            except InvalidInput as exc:
                field = {"expires_at": "expires_on"}.get(exc.field, exc.field)
                getattr(form, field if field in form else "ip_allowlist").errors.append(str(exc))
            else:
                return redirect_to(url_for("keys.index"))
    return render("keys/limits.html", "form", 422 if form.errors else 200, key=key, form=form)
