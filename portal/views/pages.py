"""Public pages: home, quickstart, models, pricing, terms, privacy, refund policy, contact
(health checks: views/health.py)."""
from types import SimpleNamespace

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user
from wtforms import RadioField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length

from .. import apikeys, catalog, inbox, legal, links, model_catalog, ratelimit
from ..errors import InvalidInput
from ..i18n import language
from ..models import ContactCategory, LegalDocument, LegalKind, Protocol
from ..ratelimit import Limit
from . import htmx
from .csrf import rerender_on_csrf_error
from .forms import ContactForm

bp = Blueprint("pages", __name__)
CONTACT_LIMIT = 5  # messages per IP per hour


def price_list() -> list[tuple]:
    rows = []
    for model in catalog.enabled_models():
        price = catalog.current_price(model.id)
        if price is not None:
            rows.append((model, catalog.as_price(price), price.effective_at))
    return rows


@bp.get("/")
def home():
    return render_template("pages/home.html", prices=price_list()[:6])


def upcoming_changes(prices: list[tuple]) -> dict[int, list[tuple]]:
    """Per model id: (moment, what changes) for each price change still to come, soonest first, so
    users see a rise before it applies. Each change is compared with the price before it."""
    found = {}
    for model, price, _since in prices:
        before, changes = price, []
        for row in catalog.upcoming_prices(model.id):
            after = catalog.as_price(row)
            changes.append((row.effective_at, catalog.differences(before, after)))
            before = after
        if changes:
            found[model.id] = changes
    return found


# Never a real key: the snippets are the same for everyone, and copied into shells and files.
PLACEHOLDER_KEY = f"{apikeys.PREFIX}...YOUR_KEY"
MAX_QUERY = 100


@bp.get("/quickstart")
def quickstart():
    root = links.site_root()
    listed = model_catalog.public_models()
    by_protocol = {protocol: next((m.public_id for m in listed if m.protocol == protocol), None)
                   for protocol in (Protocol.OPENAI.value, Protocol.ANTHROPIC.value)}
    fallback = listed[0].public_id if listed else "MODEL_ID"
    return render_template("pages/quickstart.html", base_url=f"{root}/v1", site_root=root, models=listed,
                           key=PLACEHOLDER_KEY, openai_model=by_protocol["openai"] or fallback,
                           anthropic_model=by_protocol["anthropic"] or fallback)


@bp.get("/models")
def models():
    query = " ".join(request.args.get("q", "").split())[:MAX_QUERY]
    everything = model_catalog.public_models()
    shown = [m for m in everything if m.matches(query)]
    return htmx.render("pages/models.html", "results", models=shown, total=len(everything), query=query,
                       example_input=model_catalog.EXAMPLE_INPUT, example_output=model_catalog.EXAMPLE_OUTPUT)


@bp.get("/pricing")
def pricing():
    prices = price_list()
    return render_template("pages/pricing.html", prices=prices, upcoming=upcoming_changes(prices))


def legal_text(document: LegalDocument, *, demote: bool = False) -> SimpleNamespace:
    """What the reader sees of a version: its text in their language, else the English one (`untranslated`).

    `demote`: the page has its own <h1>, so the document's headings go one level down. Without it,
    a document with exactly one <h1> gives the page its heading; any other is demoted under the
    page's own (`own_heading` false), so a page always has one <h1>.
    """
    shown, untranslated = legal.in_language(document, language())
    html = legal.render(shown)
    own_heading = not demote and legal.top_headings(html) == 1
    if not own_heading:
        html = legal.demote(html)
    return SimpleNamespace(html=html, untranslated=untranslated, lang=shown.lang, own_heading=own_heading)


# The consent page (views/auth.py) shows the version it asks about through this too.
bp.add_app_template_global(legal_text, "legal_text")


def _legal_page(kind: LegalKind, version: str | None):
    document = legal.find(kind, version) if version else legal.current(kind)
    if document is None:
        if version:
            abort(404)
        return render_template("pages/legal.html", kind=kind, document=None, versions=[], text=None)
    return render_template("pages/legal.html", kind=kind, document=document, versions=legal.versions(kind),
                           text=legal_text(document), is_current=document.id == legal.current(kind).id)


@bp.get("/terms", defaults={"version": None})
@bp.get("/terms/<version>")
def terms(version):
    return _legal_page(LegalKind.TERMS, version)


@bp.get("/privacy", defaults={"version": None})
@bp.get("/privacy/<version>")
def privacy(version):
    return _legal_page(LegalKind.PRIVACY, version)


@bp.get("/legal/refunds", defaults={"version": None})
@bp.get("/legal/refunds/<version>")
def refunds(version):
    # Until the operator publishes one, the page shows the built-in policy (refunds.py's rules).
    return _legal_page(LegalKind.REFUND_POLICY, version)


class MessageForm(ContactForm):
    """The contact form with what the message is about, and for abuse reports the key or request concerned."""

    # Left out (an older form, a script): a question.
    category = RadioField(_l("What is it about?"), default=ContactCategory.QUESTION.value,
                          choices=[SelectChoice(value, label) for value, label in inbox.CATEGORY_LABELS.items()])
    reference = StringField(_l("Key hint or request id (for abuse reports)"),
                            validators=[Length(max=inbox.MAX_REFERENCE)])


@bp.route("/contact", methods=["GET", "POST"])
@rerender_on_csrf_error
def contact():
    form = MessageForm()
    if request.method in ("GET", "HEAD"):
        if current_user.is_authenticated:
            form.email.data = current_user.email
        if request.args.get("category") in inbox.CATEGORIES:  # "report abuse" links
            form.category.data = request.args["category"]
    if form.validate_on_submit():
        ip = request.remote_addr or "unknown"
        # Taken before anything is stored, so parallel posts cannot all pass a check of the count.
        wait = ratelimit.take(Limit(f"contact:{ip}", CONTACT_LIMIT, 3600))
        if wait is not None:
            form.message.errors.append(ngettext(
                "You have sent several messages already; try again in %(num)d minute.",
                "You have sent several messages already; try again in %(num)d minutes.", max(1, wait // 60)))
            return render_template("pages/contact.html", form=form), 429
        try:
            sent = inbox.submit(email=form.email.data, subject=form.subject.data, message=form.message.data,
                                category=form.category.data, reference=form.reference.data, ip=ip,
                                user_id=current_user.id if current_user.is_authenticated else None)
        except InvalidInput as exc:
            getattr(form, exc.field or "message", form.message).errors.append(str(exc))
            return render_template("pages/contact.html", form=form), 422
        flash(_("Thank you: your message reached the operator. They will answer by email."))
        if sent.pasted_key:
            flash(_("Your message contained a whole API key. We kept only its last four characters. Anyone who has "
                    "seen a key can use it: if it is yours, revoke it on the API keys page and create a new one."))
        return redirect(url_for("pages.contact"))
    return render_template("pages/contact.html", form=form), 422 if form.errors else 200


