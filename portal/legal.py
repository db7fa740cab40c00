"""Terms, privacy and refund-policy versions, and who accepted which (the refund policy asks no consent)."""
from typing import Optional

import markdown
from markupsafe import Markup
from sqlalchemy import select

from .errors import AlreadyExists, InvalidInput
from .extensions import db
from .models import LegalDocument, LegalKind, TermsAcceptance, User, utcnow

TITLES = {LegalKind.TERMS.value: "terms of service", LegalKind.PRIVACY.value: "privacy policy",
          LegalKind.REFUND_POLICY.value: "refund policy"}


def publish(kind: LegalKind, version: str, body: str, *, significant: bool = False) -> LegalDocument:
    version = (version or "").strip()
    if not version or len(version) > 40:
        raise InvalidInput("version must be 1-40 characters")
    if not body.strip():
        raise InvalidInput("the document is empty")
    exists = db.session.scalar(select(LegalDocument.id).where(LegalDocument.kind == kind.value,
                                                              LegalDocument.version == version))
    if exists:
        raise AlreadyExists(f"{kind.value} version {version!r} is already published")
    document = LegalDocument(kind=kind.value, version=version, body=body, significant=significant,
                             published_at=utcnow())
    db.session.add(document)
    db.session.flush()
    return document


def current(kind: LegalKind) -> Optional[LegalDocument]:
    return db.session.scalar(select(LegalDocument).where(LegalDocument.kind == kind.value)
                             .order_by(LegalDocument.published_at.desc(), LegalDocument.id.desc()).limit(1))


def versions(kind: LegalKind) -> list[LegalDocument]:
    return list(db.session.scalars(select(LegalDocument).where(LegalDocument.kind == kind.value)
                                   .order_by(LegalDocument.published_at.desc(), LegalDocument.id.desc())))


def find(kind: LegalKind, version: str) -> Optional[LegalDocument]:
    return db.session.scalar(select(LegalDocument).where(LegalDocument.kind == kind.value,
                                                         LegalDocument.version == version))


def render(document: LegalDocument) -> Markup:
    """Operator-written Markdown as HTML; raw HTML in it is escaped, not trusted."""
    html = markdown.markdown(document.body.replace("<", "&lt;"), extensions=["tables", "sane_lists"])
    return Markup(html)


def accept(user: User, document: LegalDocument, ip: Optional[str]) -> None:
    db.session.add(TermsAcceptance(user_id=user.id, document_id=document.id, accepted_at=utcnow(), ip=ip))


def latest_acceptance(user: User, kind: LegalKind = LegalKind.TERMS) -> Optional[TermsAcceptance]:
    return db.session.scalar(select(TermsAcceptance).join(LegalDocument)
                             .where(TermsAcceptance.user_id == user.id, LegalDocument.kind == kind.value)
                             .order_by(LegalDocument.published_at.desc(), TermsAcceptance.id.desc()).limit(1))


def _pending(user: User, kind: LegalKind) -> Optional[LegalDocument]:
    newest = current(kind)
    if newest is None:
        return None
    accepted = latest_acceptance(user, kind)
    if accepted is not None and accepted.document_id == newest.id:
        return None
    since = accepted.document.published_at if accepted else None
    if since is None and kind is LegalKind.PRIVACY:
        # Sign-up accepts the terms explicitly and the privacy policy then in force by reference,
        # which nothing records: only significant versions published since the account began count.
        since = user.created_at
    query = select(LegalDocument.id).where(LegalDocument.kind == kind.value, LegalDocument.significant.is_(True))
    if since is not None:
        query = query.where(LegalDocument.published_at > since)
    return newest if db.session.scalar(query.limit(1)) else None


def needs_consent(user: User) -> Optional[LegalDocument]:
    """The document the user must accept before going on: the newest terms, then the newest privacy
    policy, when a significant version of it is newer than the one they accepted."""
    return _pending(user, LegalKind.TERMS) or _pending(user, LegalKind.PRIVACY)
