"""Public pages: home, pricing, terms, privacy, refund policy, contact; and the health check."""
from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .. import catalog, legal, ratelimit
from ..database import atomic
from ..extensions import db
from ..models import ContactMessage, LegalKind
from ..ratelimit import Limit
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


@bp.get("/pricing")
def pricing():
    return render_template("pages/pricing.html", prices=price_list())


def _legal_page(kind: LegalKind, version: str | None):
    document = legal.find(kind, version) if version else legal.current(kind)
    if document is None:
        if version:
            abort(404)
        return render_template("pages/legal.html", kind=kind, document=None, versions=[], html=None)
    return render_template("pages/legal.html", kind=kind, document=document, versions=legal.versions(kind),
                           html=legal.render(document), is_current=document.id == legal.current(kind).id)


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


@bp.route("/contact", methods=["GET", "POST"])
def contact():
    form = ContactForm()
    if request.method == "GET" and current_user.is_authenticated:
        form.email.data = current_user.email
    if form.validate_on_submit():
        ip = request.remote_addr or "unknown"
        # Taken before anything is stored, so parallel posts cannot all pass a check of the count.
        wait = ratelimit.take(Limit(f"contact:{ip}", CONTACT_LIMIT, 3600))
        if wait is not None:
            form.message.errors.append(f"You have sent several messages already; try again in "
                                       f"{max(1, wait // 60)} minutes.")
            return render_template("pages/contact.html", form=form), 429
        with atomic():
            db.session.add(ContactMessage(email=form.email.data.strip(), subject=form.subject.data.strip(),
                                          message=form.message.data.strip(), ip=ip,
                                          user_id=current_user.id if current_user.is_authenticated else None))
        flash("Thank you: your message reached the operator. They will answer by email.")
        return redirect(url_for("pages.contact"))
    return render_template("pages/contact.html", form=form), 422 if form.errors else 200


@bp.get("/healthz")
def healthz():
    """200 when the app can reach its database, 503 otherwise."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok")
