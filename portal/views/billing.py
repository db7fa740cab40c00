"""Billing: balance and expiry, top-ups through Stripe Checkout, past top-ups and their receipts."""
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField

from .. import autotopup, links, notices, payments, security, topups
from ..database import atomic
from ..errors import DomainError, InvalidAmount
from ..extensions import db
from ..config import PAYMENT_METHODS
from ..models import Account, User
from ..money import format_usd, parse_usd
from .htmx import redirect_to, render

bp = Blueprint("billing", __name__, url_prefix="/billing")
PAGE = "billing/index.html"
STRIPE_CHECKOUT = "https://checkout.stripe.com"
MAX_AMOUNT_TEXT = 32  # "$1,000,000.00" fits many times over; longer is not an amount


class TopupForm(FlaskForm):
    # Preset buttons post `preset` (micro-USD, one of TOPUP_PRESETS) from a form of their own, so
    # that Enter in this field never submits a preset; the custom amount is dollars.
    amount = StringField("Other amount, USD", render_kw={"inputmode": "decimal", "autocomplete": "off",
                                                         "placeholder": "25.00"})
    # Only this form saves a card: one checkbox cannot belong to the preset buttons' form too.
    save_card = BooleanField("Save my card for automatic top-ups")


class AlertForm(FlaskForm):
    threshold = StringField("Mail me when my available balance falls below, USD",
                            render_kw={"inputmode": "decimal", "autocomplete": "off"})


class AutoTopupForm(FlaskForm):
    auto_enabled = BooleanField("Top up automatically")
    auto_threshold = StringField("When my available balance falls below, USD",
                                 render_kw={"inputmode": "decimal", "autocomplete": "off"})
    auto_amount = StringField("Charge my card, USD", render_kw={"inputmode": "decimal", "autocomplete": "off"})
    auto_limit = StringField("At most this much a month, USD", render_kw={"inputmode": "decimal", "autocomplete": "off"})


class ForgetCardForm(FlaskForm):
    """Only its CSRF token."""


def _dollars(amount: int) -> str:
    return format_usd(amount)[1:].replace(",", "")


def _checkout_origin() -> str:
    # The hosted page lives on Stripe's checkout host, or (a test double, stripe-mock) next to the API.
    base = current_app.config.get("STRIPE_API_BASE")
    if base:
        parts = urlsplit(base)
        return f"{parts.scheme}://{parts.netloc}"
    return STRIPE_CHECKOUT


def _allow_checkout_redirect(response):
    # The top-up form's answer is a 303 to Stripe; browsers apply the page's form-action to it,
    # so the page holding the form allows Stripe's checkout host as well as ourselves.
    response.headers["Content-Security-Policy"] = security.CSP.replace(
        "form-action 'self'", f"form-action 'self' {_checkout_origin()}")
    return response


def _account() -> Account:
    return db.session.get(User, current_user.id).account


def _page(status=200, block="content", form_error=None, **forms):
    account = _account()
    gross, net = payments.paid_in_past_year(account.id)
    alert = forms.pop("alert", None) or AlertForm(
        formdata=None, threshold=format_usd(account.low_balance_threshold)[1:].replace(",", ""))
    auto = forms.pop("auto", None) or AutoTopupForm(
        formdata=None, auto_enabled=account.auto_topup_enabled, auto_threshold=_dollars(account.auto_topup_threshold),
        auto_amount=_dollars(account.auto_topup_amount), auto_limit=_dollars(account.auto_topup_monthly_limit))
    response = render(PAGE, block, status, account=account, standing=topups.standing(account),
                      auto=auto, forget=ForgetCardForm(formdata=None), can_save_card=topups.can_save_card(),
                      auto_month=autotopup.charged_this_month(account.id),
                      form=forms.pop("form", None) or TopupForm(formdata=None), alert=alert,
                      configured=topups.available(), presets=topups.presets(), limits=topups.limits(),
                      methods=topups.methods(), method_names=PAYMENT_METHODS, payments=topups.history(account.id),
                      paid_year=gross, paid_year_net=net,
                      form_error=form_error)
    return _allow_checkout_redirect(response)


@bp.get("/")
@login_required
def index():
    return _page()


def _amount(form: TopupForm) -> int:
    """The amount chosen: a preset button, or the custom field; InvalidAmount (field "amount") otherwise."""
    preset = request.form.get("preset")
    if preset is not None:
        amount = int(preset) if preset.isascii() and preset.isdigit() and len(preset) < 16 else None
        if amount not in topups.presets():
            raise InvalidAmount("Choose one of the amounts shown, or type another amount.", field="amount")
        return amount
    text = (form.amount.data or "").strip().replace(",", "")
    if not text:
        raise InvalidAmount("Choose an amount, or type one.", field="amount")
    try:
        if len(text) > MAX_AMOUNT_TEXT:
            raise InvalidAmount("too long")
        return parse_usd(text)
    except InvalidAmount:
        low, high = topups.limits()
        raise InvalidAmount(f"Type an amount in dollars, such as 25 or 12.50, from {format_usd(low)} to "
                            f"{format_usd(high)}.", field="amount") from None


@bp.post("/checkout")
@login_required
def checkout():
    form = TopupForm()
    if not form.validate_on_submit():
        return _page(422, "topup", form=form)
    try:
        session = topups.start_checkout(
            db.session.get(User, current_user.id), _amount(form),
            success_url=links.public_url("billing.success") + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=links.public_url("billing.cancel"), save_card=bool(form.save_card.data))
    except InvalidAmount as exc:
        form.amount.errors = [*form.amount.errors, str(exc)]
        return _page(422, "topup", form=form)
    except DomainError as exc:
        # Refused or Stripe unavailable: said above the forms. 422 like every refused form, so
        # htmx swaps the message in (it leaves 5xx answers unswapped).
        return _page(422, "topup", form=form, form_error=str(exc))
    return redirect_to(session.url)


@bp.get("/success")
@login_required
def success():
    # Only this person's own payment is shown; whatever the query says, nothing is credited here.
    account = _account()
    payment = topups.own_payment(account.id, request.args.get("session_id", type=str))
    return render("billing/success.html", "status", payment=payment, account=account)


@bp.get("/cancel")
@login_required
def cancel():
    return render("billing/cancel.html", "content")


@bp.post("/alerts")
@login_required
def alerts():
    form = AlertForm()
    if form.validate_on_submit():
        try:
            threshold = parse_usd((form.threshold.data or "").strip().replace(",", "") or "x")
        except InvalidAmount:
            form.threshold.errors = ["Type an amount in dollars, such as 1 or 2.50; 0 turns the mail off."]
        else:
            try:
                with atomic():
                    notices.set_low_balance_threshold(_account(), threshold)
            except InvalidAmount as exc:
                form.threshold.errors = [str(exc)]
            else:
                flash(f"We will mail you once when your available balance falls below {format_usd(threshold)}."
                      if threshold else "Low-balance mail is off.")
                return redirect_to(url_for("billing.index"))
    return _page(422, "alerts", alert=form)


@bp.post("/auto-topup")
@login_required
def auto_topup():
    form = AutoTopupForm()
    if form.validate_on_submit():
        values = {}
        for name, example in (("auto_threshold", "5"), ("auto_amount", "20"), ("auto_limit", "100")):
            text = (getattr(form, name).data or "").strip().replace(",", "")
            try:
                if len(text) > MAX_AMOUNT_TEXT:
                    raise InvalidAmount("too long")
                values[name] = parse_usd(text or "x")
            except InvalidAmount:
                getattr(form, name).errors = [f"Type an amount in dollars, such as {example} or {example}.50."]
        if len(values) == 3:
            try:
                with atomic():
                    autotopup.configure(_account(), enabled=bool(form.auto_enabled.data),
                                        threshold=values["auto_threshold"], amount=values["auto_amount"],
                                        monthly_limit=values["auto_limit"])
            except InvalidAmount as exc:
                field = getattr(form, exc.field or "auto_amount")
                field.errors = [*field.errors, str(exc)]
            else:
                account = _account()
                flash(f"Automatic top-up is on: {format_usd(values['auto_amount'])} when your available balance "
                      f"falls below {format_usd(values['auto_threshold'])}, at most "
                      f"{format_usd(values['auto_limit'])} a month."
                      + ("" if account.auto_topup_payment_method else
                         " It starts once you save a card with your next top-up.")
                      if form.auto_enabled.data else "Automatic top-up is off.")
                return redirect_to(url_for("billing.index"))
    return _page(422, "autotopup", auto=form)


@bp.post("/auto-topup/forget-card")
@login_required
def forget_card():
    # CSRFProtect has checked the token (the form carries nothing else).
    autotopup.forget_card(_account())
    flash("Your card is forgotten and automatic top-up is off.")
    return redirect_to(url_for("billing.index"))
