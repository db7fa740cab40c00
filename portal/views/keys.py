"""API keys: list, create (shown once), rename, revoke, limits. htmx-enhanced, plain forms underneath.

Post/redirect/get: a plain form's create or rotate answers 303 to the keys page, which shows the new
secret once (kept encrypted in the session for that one view) and forgets it; a reload shows the list
and never makes another key. htmx swaps the panel with the secret in, the address staying /keys/.
Forms check every field and say all that is wrong at once, in words that say what to type.
"""
import ipaddress
import json
import re
from datetime import datetime, time, timezone

from flask import Blueprint, abort, current_app, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import DateField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional as Optional_, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget, NumberInput

from .. import apikeys, apilimits, catalog, config, links, security, security_notices
from ..database import atomic
from ..errors import DomainError, InvalidInput
from ..extensions import db, htmx
from ..i18n import number
from ..models import User, utcnow
from ..money import format_usd, parse_usd
from . import shown_once
from .csrf import rerender_on_csrf_error
from .htmx import redirect_to, render

bp = Blueprint("keys", __name__, url_prefix="/keys")
PAGE = "keys/index.html"
_SHOWN_ONCE = "new_key"  # session entry: [name, secret] of a key just made, until the keys page shows it
_MAX_AMOUNT_TEXT = 30


def _name_length():
    return _l("Enter a name of at most %(max)d characters.")


class NewKeyForm(FlaskForm):
    name = StringField(_l("Name"), validators=[Length(max=apikeys.MAX_NAME_LENGTH, message=_name_length())],
                       render_kw={"placeholder": _l("laptop, CI, claude-code…"), "autocomplete": "off"})


class RenameForm(FlaskForm):
    name = StringField(_l("New name"), validators=[
        DataRequired(message=_l("Enter a name for the key, like laptop or CI.")),
        Length(max=apikeys.MAX_NAME_LENGTH, message=_name_length())], render_kw={"autocomplete": "off"})


class IsoDateField(DateField):
    """A date as year-month-day (what a date input sends), with an error that says what to type."""

    def process_formdata(self, valuelist):
        try:
            super().process_formdata([" ".join(valuelist).strip()] if valuelist else valuelist)
        except ValueError:
            raise ValueError(_("Enter a date like 2027-01-31.")) from None


class ModelChoices(SelectMultipleField):
    """Ticked models; one no longer offered (disabled while the form was open) is named."""

    def pre_validate(self, form):
        offered = {value for value, *_rest in self.choices}
        gone = [value for value in self.data or () if value not in offered]
        if gone:
            raise ValidationError(_("These models are not offered any more: %(models)s. Tick the models again.",
                                    models=", ".join(gone)))


def _whole_number(label):
    # Text, checked in the view: one message that gives the range, whatever was typed.
    return StringField(label, widget=NumberInput(), render_kw={"inputmode": "numeric"})


class LimitsForm(FlaskForm):
    allowed_models = ModelChoices(_l("Models this key may call"), choices=[],
                                  widget=ListWidget(prefix_label=False), option_widget=CheckboxInput())
    spend_cap_total = StringField(_l("Total spend cap, US dollars"),
                                  render_kw={"inputmode": "decimal", "placeholder": _l("no cap")})
    spend_cap_monthly = StringField(_l("Monthly spend cap, US dollars"),
                                    render_kw={"inputmode": "decimal", "placeholder": _l("no cap")})
    expires_on = IsoDateField(_l("Last day the key works (UTC)"), validators=[Optional_()])
    ip_allowlist = TextAreaField(_l("Allowed IP addresses"), validators=[
        Optional_(), Length(max=4000, message=_l("Keep the list under 4,000 characters."))],
        render_kw={"placeholder": _l("any address"), "rows": 3})
    max_concurrency = _whole_number(_l("Calls in progress at once"))
    max_rpm = _whole_number(_l("Requests per minute"))
    max_tpm = _whole_number(_l("Tokens per minute"))


# --- pages ---------------------------------------------------------------------------------------

def _keys_page(status=200, **extra):
    keys = apikeys.list_for(current_user)
    return render(PAGE, "keys", status, keys=keys, form=extra.pop("form", None) or NewKeyForm(formdata=None), month_spend={
        k.id: apikeys.spent_this_month(k) for k in keys}, **extra)


def _with_secret(name: str, plaintext: str):
    """The keys page with a new key's secret: shown this once, kept out of every cache."""
    return security.no_store(_keys_page(new_key=plaintext, new_key_name=name, base_url=links.site_root(),
                                        example_model=next((m.public_id for m in catalog.enabled_models()), "echo-1")))


def _shown(name: str, plaintext: str):
    """After a create or rotate: htmx swaps the panel with the secret in; a plain form goes (303) to the
    keys page, which shows it once, so a reload there makes nothing and shows nothing."""
    # The owner hears of every new key (after the commit, on the background sender): never the secret.
    security_notices.notify(current_app._get_current_object(), security_notices.KEY_CREATED, current_user.id,
                            request.remote_addr, key_name=name)
    if htmx:
        return _with_secret(name, plaintext)
    shown_once.keep(_SHOWN_ONCE, [name, plaintext])
    return security.no_store(redirect_to(url_for("keys.index")))


def _own(key_id: int):
    try:
        return apikeys.find_for(db.session.get(User, current_user.id), key_id)
    except DomainError:
        abort(404)


@bp.get("/")
@login_required
def index():
    shown = shown_once.take(_SHOWN_ONCE)  # only this module wrote it, in a signed cookie
    return _with_secret(*shown) if shown else _keys_page()


@bp.post("/")
@rerender_on_csrf_error
@login_required
def create():
    form = NewKeyForm()
    if not form.validate_on_submit():
        return _keys_page(422, form=form)
    try:
        with atomic():
            key, plaintext = apikeys.issue(db.session.get(User, current_user.id), form.name.data)
            key_name = key.name
    except InvalidInput:
        form.name.errors.append(_("Confirm your email address to create API keys.") if not current_user.is_verified
                                else _("This account cannot create keys now. Contact us if you think this is a "
                                       "mistake."))
        return _keys_page(422, form=form)
    return _shown(key_name, plaintext)


@bp.post("/<int:key_id>/rotate")  # a GET (a refused rotation reloaded) goes to /keys/: errors.page_of_form
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
    except InvalidInput:
        return _keys_page(422, rotate_error=_("This key is revoked already; create a new one instead."))
    return _shown(key_name, plaintext)


@bp.route("/<int:key_id>/rename", methods=["GET", "POST"])
@rerender_on_csrf_error
@login_required
def rename(key_id: int):
    key = _own(key_id)
    form = RenameForm(name=key.name)
    if form.validate_on_submit():
        try:
            with atomic():
                apikeys.rename(key, form.name.data)
        except InvalidInput:
            form.name.errors.append(_("Enter a name of at most %(max)d characters.", max=apikeys.MAX_NAME_LENGTH))
        else:
            return redirect_to(url_for("keys.index"))
    return render("keys/rename.html", "form", 422 if form.errors else 200, key=key, form=form)


@bp.route("/<int:key_id>/revoke", methods=["GET", "POST"])
@rerender_on_csrf_error
@login_required
def revoke(key_id: int):
    key = _own(key_id)
    form = FlaskForm()
    if form.validate_on_submit():
        with atomic():
            apikeys.revoke(key)
        return redirect_to(url_for("keys.index"))
    return render("keys/revoke.html", "confirm", 422 if form.errors else 200, key=key, form=form)


# --- limits --------------------------------------------------------------------------------------

def _amount(field) -> int | None:
    """A spend cap in micro-dollars, None when empty; a problem goes on the field."""
    text = (field.data or "").strip().replace(",", "")
    if not text:
        return None
    try:
        if len(text) > _MAX_AMOUNT_TEXT:
            raise InvalidInput("too long")
        micro = parse_usd(text)
    except InvalidInput:
        field.errors.append(_("Enter an amount in US dollars, like 5 or 12.50, or leave it empty for no cap."))
        return None
    if micro == 0:
        field.errors.append(_("A cap of zero would refuse every call: enter an amount above zero, like 5 or 12.50, "
                              "or leave it empty for no cap."))
        return None
    return micro


def _count(field, most: int, when_empty: str) -> int | None:
    """A whole number from 1 to `most`, None when empty; a problem goes on the field."""
    text = (field.data or "").strip().replace(",", "")
    if not text:
        return None
    if re.fullmatch(r"[0-9]{1,15}", text) and 1 <= int(text) <= most:
        return int(text)
    field.errors.append(_("Enter a whole number from 1 to %(most)s, or leave it empty for %(default)s.",
                          most=number(most), default=when_empty))
    return None


def _networks(field) -> str | None:
    """The IP allow-list as typed (the domain normalises it), after naming every entry that is not one."""
    text = field.data or ""
    entries = [entry.strip() for entry in text.replace(",", "\n").splitlines() if entry.strip()]
    bad = []
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            bad.append(entry)
    if bad:
        field.errors.append(_("Not an IP address or network: %(entries)s. Enter IP addresses or networks like "
                              "203.0.113.7 or 10.0.0.0/24, one per line.", entries=", ".join(bad[:5])))
    return text if entries else None


@bp.route("/<int:key_id>/limits", methods=["GET", "POST"])
@rerender_on_csrf_error
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
                         "placeholder": number(ceiling) if ceiling else _("no limit")}
    form.max_concurrency.render_kw = {**form.max_concurrency.render_kw, "min": 1, "max": most,
                                      "placeholder": str(most)}
    if not form.is_submitted():
        form.allowed_models.data = sorted(json.loads(key.allowed_models)) if key.allowed_models else []
        form.spend_cap_total.data = format_usd(key.spend_cap_total)[1:] if key.spend_cap_total else ""
        form.spend_cap_monthly.data = format_usd(key.spend_cap_monthly)[1:] if key.spend_cap_monthly else ""
        form.expires_on.data = key.expires_at.date() if key.expires_at else None
        form.ip_allowlist.data = key.ip_allowlist or ""
        form.max_concurrency.data = key.max_concurrency
        form.max_rpm.data, form.max_tpm.data = key.max_rpm, key.max_tpm
        return render("keys/limits.html", "form", key=key, form=form)

    # Every field is checked, whatever the others hold, so all that is wrong is said at once.
    submitted = form.validate_on_submit()
    concurrency = _count(form.max_concurrency, most, number(most))
    rpm = _count(form.max_rpm, most_rpm or apilimits.MAX_PER_MINUTE,
                 _("the platform's limit (%(limit)s)", limit=number(most_rpm)) if most_rpm else _("no limit"))
    tpm = _count(form.max_tpm, most_tpm or apilimits.MAX_PER_MINUTE,
                 _("the platform's limit (%(limit)s)", limit=number(most_tpm)) if most_tpm else _("no limit"))
    total_cap = _amount(form.spend_cap_total)
    monthly_cap = _amount(form.spend_cap_monthly)
    networks = _networks(form.ip_allowlist) if not form.ip_allowlist.errors else None
    expires = None
    if form.expires_on.data and not form.expires_on.errors:
        if form.expires_on.data < utcnow().date():
            form.expires_on.errors.append(_("That day has passed: enter today's date or a later one, like "
                                            "2027-01-31, or leave it empty for a key that does not expire."))
        else:
            expires = datetime.combine(form.expires_on.data, time.max, tzinfo=timezone.utc)
    if submitted and not form.errors:
        try:
            with atomic():
                apikeys.set_limits(key, apikeys.Limits(
                    allowed_models=form.allowed_models.data or None, ip_allowlist=networks,
                    spend_cap_total=total_cap, spend_cap_monthly=monthly_cap, expires_at=expires,
                    max_concurrency=concurrency))
                apilimits.set_own(current_app.config, key, account, rpm=rpm, tpm=tpm)
        except InvalidInput as exc:
            # The checks above say the same in people's words; this is the domain's last word (a race).
            field = {"expires_at": "expires_on"}.get(exc.field, exc.field)
            getattr(form, field if field in form else "ip_allowlist").errors.append(str(exc))
        else:
            return redirect_to(url_for("keys.index"))
    return render("keys/limits.html", "form", 422, key=key, form=form)
