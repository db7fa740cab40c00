"""Billing: balance and expiry, top-ups through Stripe Checkout, past top-ups and their receipts.

Every form on the page posts to a URL of its own and, on success, redirects (303, or HX-Redirect).
A refused form is the whole page again (422) at the URL it posted to; a GET of that URL (what a
reload or a bookmark asks) is sent back to the billing page, so nothing answers 405 and nothing
is started twice.
"""
from typing import Optional
from urllib.parse import urlsplit

from babel.lists import format_list
from flask import Blueprint, current_app, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField

from .. import autotopup, links, notices, payments, security, topups
from ..config import PAYMENT_METHODS
from ..database import atomic
from ..errors import DomainError, InvalidAmount
from ..extensions import db
from ..i18n import language, usd
from ..models import Account, User
from ..money import format_usd, parse_usd
from .csrf import rerender_on_csrf_error
from .htmx import redirect_to, render

bp = Blueprint("billing", __name__, url_prefix="/billing")
PAGE = "billing/index.html"
STRIPE_CHECKOUT = "https://checkout.stripe.com"
MAX_AMOUNT_TEXT = 32  # "$1,000,000.00" fits many times over; longer is not an amount
MONEY_INPUT = {"inputmode": "decimal", "autocomplete": "off"}

# Payment methods in the page's language; the others are brand names, the same in every language.
METHOD_NAMES = {**PAYMENT_METHODS, "card": _l("card"), "alipay": _l("Alipay"), "wechat_pay": _l("WeChat Pay"),
                "us_bank_account": _l("US bank account"), "sepa_debit": _l("SEPA debit")}
# Stripe's dispute states (payments.py stores them as Stripe names them).
DISPUTE_STATES = {"warning_needs_response": _l("inquiry, needs a response"), "warning_under_review": _l("inquiry under review"),
                  "warning_closed": _l("inquiry closed"), "needs_response": _l("needs a response"),
                  "under_review": _l("under review"), "won": _l("won"), "lost": _l("lost"),
                  "charge_refunded": _l("refunded")}


class TopupForm(FlaskForm):
    # Preset buttons post `preset` (micro-USD, one of TOPUP_PRESETS) from a form of their own, so
    # that Enter in this field never submits a preset; the custom amount is dollars.
    amount = StringField(_l("Other amount, USD"), render_kw={**MONEY_INPUT, "placeholder": "25.00"})
    # Only this form saves a card: one checkbox cannot belong to the preset buttons' form too.
    save_card = BooleanField(_l("Save my card for automatic top-ups"))


class AlertForm(FlaskForm):
    threshold = StringField(_l("Mail me when my available balance falls below, USD"), render_kw=MONEY_INPUT)


class AutoTopupForm(FlaskForm):
    auto_enabled = BooleanField(_l("Top up automatically"))
    auto_threshold = StringField(_l("When my available balance falls below, USD"), render_kw=MONEY_INPUT)
    auto_amount = StringField(_l("Charge my card, USD"), render_kw=MONEY_INPUT)
    auto_limit = StringField(_l("At most this much a month, USD"), render_kw=MONEY_INPUT)


class ForgetCardForm(FlaskForm):
    """Only its CSRF token."""


class RedeemForm(FlaskForm):
    code = StringField(_l("Gift code"), render_kw={"maxlength": 64, "autocomplete": "off", "spellcheck": "false",
                                                  "autocapitalize": "characters",
                                                  "placeholder": "TG-XXXX-XXXX-XXXX-XXXX"})


# -- amounts as people type them ------------------------------------------------------------------

def _typed(text: Optional[str]) -> Optional[int]:
    """Micro-dollars from what was typed ("12.50", "$7", "1,000"), or None if it is not an amount."""
    text = (text or "").strip().replace(",", "")
    if not text or len(text) > MAX_AMOUNT_TEXT:
        return None
    try:
        return parse_usd(text)
    except InvalidAmount:
        return None


def _field_text(micro: int) -> str:
    return format_usd(micro)[1:].replace(",", "")


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


def _methods_text(methods) -> str:
    return format_list([str(METHOD_NAMES.get(m, m)) for m in methods], style="or", locale=language())


def page(status=200, block="content", form_error=None, **forms):
    """The billing page (or one block of it for htmx), with any refused form given in `forms`."""
    account = _account()
    gross, net = payments.paid_in_past_year(account.id)
    alert = forms.pop("alert", None) or AlertForm(formdata=None, threshold=_field_text(account.low_balance_threshold))
    auto = forms.pop("auto", None) or AutoTopupForm(
        formdata=None, auto_enabled=account.auto_topup_enabled,
        auto_threshold=_field_text(account.auto_topup_threshold), auto_amount=_field_text(account.auto_topup_amount),
        auto_limit=_field_text(account.auto_topup_monthly_limit))
    methods = topups.methods()
    response = render(PAGE, block, status, account=account, standing=topups.standing(account),
                      auto=auto, forget=ForgetCardForm(formdata=None), can_save_card=topups.can_save_card(),
                      auto_month=autotopup.charged_this_month(account.id),
                      form=forms.pop("form", None) or TopupForm(formdata=None), alert=alert,
                      code_form=forms.pop("code_form", None) or RedeemForm(formdata=None),
                      configured=topups.available(), presets=topups.presets(), limits=topups.limits(),
                      bounds=tuple(topups.dollars(b) for b in topups.limits()),
                      methods=methods, methods_text=_methods_text(methods), method_names=METHOD_NAMES,
                      dispute_states=DISPUTE_STATES, payments=topups.history(account.id),
                      paid_year=gross, paid_year_net=net, form_error=form_error)
    return _allow_checkout_redirect(response)


def back_to_page(anchor: str = ""):
    """A GET of a form's POST URL (a reload after a refused form): the billing page, at that form."""
    return redirect(url_for("billing.index") + (f"#{anchor}" if anchor else ""), code=303)


@bp.get("/")
@login_required
def index():
    return page()


# A GET of a form's POST URL: the billing page at that form (see the module's docstring).
@bp.get("/checkout", endpoint="checkout_again", defaults={"anchor": "topup"})
@bp.get("/alerts", endpoint="alerts_again", defaults={"anchor": "alerts"})
@bp.get("/auto-topup", endpoint="auto_topup_again", defaults={"anchor": "autotopup"})
@bp.get("/auto-topup/forget-card", endpoint="forget_card_again", defaults={"anchor": "autotopup"})
@login_required
def form_again(anchor: str):
    return back_to_page(anchor)


def _amount(form: TopupForm) -> Optional[int]:
    """The amount chosen: a preset button, or what was typed in the custom field (None if it is not an
    amount); InvalidAmount (field "amount") for a preset not offered or an empty field."""
    preset = request.form.get("preset")
    if preset is not None:
        amount = int(preset) if preset.isascii() and preset.isdigit() and len(preset) < 16 else None
        if amount not in topups.presets():
            raise InvalidAmount(_("Choose one of the amounts shown, or enter another amount below."), field="amount")
        return amount
    if not (form.amount.data or "").strip():
        low, high = topups.limits()
        raise InvalidAmount(_("Choose an amount, or enter one in US dollars between %(low)s and %(high)s, "
                              "like 20 or 12.50.", low=topups.dollars(low), high=topups.dollars(high)), field="amount")
    return _typed(form.amount.data)  # None, or out of range: start_checkout refuses it, saying what to type


@bp.post("/checkout")
@rerender_on_csrf_error
@login_required
def checkout():
    form = TopupForm()
    if not form.validate_on_submit():
        return page(422, "topup", form=form)
    try:
        session = topups.start_checkout(
            db.session.get(User, current_user.id), _amount(form),
            success_url=links.public_url("billing.success") + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=links.public_url("billing.cancel"), save_card=bool(form.save_card.data))
    except InvalidAmount as exc:
        form.amount.errors = [*form.amount.errors, str(exc)]
        return page(422, "topup", form=form)
    except DomainError as exc:
        # Refused or Stripe unavailable: said above the forms. 422 like every refused form, so
        # htmx swaps the message in (it leaves 5xx answers unswapped).
        return page(422, "topup", form=form, form_error=str(exc))
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
@rerender_on_csrf_error
@login_required
def alerts():
    form = AlertForm()
    if form.validate_on_submit():
        threshold = _typed(form.threshold.data)
        try:
            with atomic():
                notices.set_low_balance_threshold(_account(), threshold)  # refuses None too
        except InvalidAmount:
            form.threshold.errors = [_("Enter an amount in US dollars up to %(max)s, like 1 or 2.50; 0 turns the "
                                       "mail off.", max=topups.dollars(notices.MAX_LOW_BALANCE_THRESHOLD))]
        else:
            flash(_("We will mail you once when your available balance falls below %(amount)s.", amount=usd(threshold))
                  if threshold else _("Low-balance mail is off."))
            return redirect_to(url_for("billing.index"))
    return page(422, "alerts", alert=form)


@bp.post("/auto-topup")
@rerender_on_csrf_error
@login_required
def auto_topup():
    form = AutoTopupForm()
    if form.validate_on_submit():
        threshold, amount, limit = (_typed(f.data) for f in (form.auto_threshold, form.auto_amount, form.auto_limit))
        try:
            with atomic():
                autotopup.configure(_account(), enabled=bool(form.auto_enabled.data), threshold=threshold,
                                    amount=amount, monthly_limit=limit)
        except autotopup.InvalidSettings as exc:
            for name, problem in exc.problems.items():
                getattr(form, name).errors = [str(problem)]
        else:
            if not form.auto_enabled.data:
                flash(_("Automatic top-up is off."))
            else:
                message = _("Automatic top-up is on: %(amount)s when your available balance falls below "
                            "%(threshold)s, at most %(limit)s a month.", amount=usd(amount),
                            threshold=usd(threshold), limit=usd(limit))
                if not _account().auto_topup_payment_method:
                    message += " " + _("It starts once you save a card with your next top-up.")
                flash(message)
            return redirect_to(url_for("billing.index"))
    return page(422, "autotopup", auto=form)


@bp.post("/auto-topup/forget-card")
@login_required
def forget_card():
    # CSRFProtect has checked the token (the form carries nothing else).
    autotopup.forget_card(_account())
    flash(_("Your card is forgotten and automatic top-up is off."))
    return redirect_to(url_for("billing.index"))
