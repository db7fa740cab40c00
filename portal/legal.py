"""Terms, privacy and refund-policy versions, who accepted or declined which, and notice of changes.

A version is never edited, only superseded. It takes effect at publication, unless it is a
significant change published with a later `effective_at` (notice in advance): until that moment
the version before it stays in force, `/terms` shows that one, everyone sees a banner naming the
date, and every active verified user is mailed once. From that moment the new version is in
force and people are asked to accept it (terms and privacy; the refund policy asks no consent).

Languages: a version is published in English first (`lang` "en": what takes effect, what people
accept, what notices are about). A translation is another row with the same kind and version in
another language (`publish_translation`); it inherits the English version's significance and
dates, and accepting while reading it accepts the version. Readers see their language's
translation when there is one, else the English text with a note (`in_language`).

The notice mail is resumable: each one is recorded with a once-only `Notice` key
(`legal-notice:<document>:<user>`) before it is sent, in batches, so a rerun after a crash or a
restart mails only the people not reached yet, and never anyone twice.
"""
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Optional, Union

from flask import render_template
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy import String, cast, exists, func, literal, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from . import audit, i18n, links, mail, notices, richtext
from .audit import Actor
from .database import atomic
from .errors import AlreadyExists, InvalidInput
from .extensions import db
from .models import (Account, LegalDecline, LegalDocument, LegalKind, Notice, TermsAcceptance, User, UserStatus,
                     utcnow)

log = logging.getLogger(__name__)

TITLES = {LegalKind.TERMS.value: "terms of service", LegalKind.PRIVACY.value: "privacy policy",
          LegalKind.REFUND_POLICY.value: "refund policy"}
# The documents people are asked to accept again after a significant change.
CONSENTED = (LegalKind.TERMS, LegalKind.PRIVACY)
NOTICE_BATCH = 200  # users mailed per transaction
MAX_BODY = 200_000  # characters

# When a version is in force: its effective date, or its publication.
_takes_effect = func.coalesce(LegalDocument.effective_at, LegalDocument.published_at)
ORIGINAL = "en"  # the language every version is published in first
# The versions themselves: every query about what is in force, accepted or announced reads these.
_original = LegalDocument.lang == ORIGINAL


def parse_effective(text: Optional[str]) -> Optional[datetime]:
    """An effective date as typed: "" (none), "2026-12-15" (midnight UTC), or an ISO 8601 moment with
    its timezone ("2026-12-15T09:00:00+01:00")."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        return datetime.combine(day, time(), tzinfo=timezone.utc)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a date: write it as 2026-12-15 (midnight UTC) or "
                           "2026-12-15T09:00:00+01:00.", field="effective_at") from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{text!r} has no timezone: add one (2026-12-15T09:00:00Z), or give the date alone.",
                           field="effective_at")
    return moment.astimezone(timezone.utc)


def when(moment: datetime) -> str:
    """A moment as people read it in notices: the date, and the time only when it is not midnight UTC."""
    moment = moment.astimezone(timezone.utc)
    return f"{moment:%Y-%m-%d}" if moment.time() == time() else f"{moment:%Y-%m-%d %H:%M} UTC"


def publish(kind: LegalKind, version: str, body: str, *, significant: bool = False,
            effective_at: Optional[datetime] = None, actor: Optional[Actor] = None, reason: Optional[str] = None,
            now: Optional[datetime] = None) -> LegalDocument:
    """Publish a new version, in force at once or, for a significant change, from `effective_at`.

    `actor`: the operator publishing it, written to the audit log (None only when the app seeds
    its own demo documents). A version cannot take effect before one already scheduled: the
    order documents take effect in stays the order they were published in.
    """
    now = now or utcnow()
    version = _clean_version(version)
    body = _clean_body(body)
    if effective_at is not None:
        if effective_at.tzinfo is None:
            raise InvalidInput("the effective date needs a timezone", field="effective_at")
        if not significant:
            raise InvalidInput("Only a significant change can take effect later: a minor one is in force as soon "
                               "as it is published. Tick “significant” or leave the date empty.",
                               field="effective_at")
        if effective_at <= now:
            raise InvalidInput("The effective date must be in the future: the point is to tell people in advance.",
                               field="effective_at")
        if current(kind, now) is None:
            raise InvalidInput(f"There is no {TITLES[kind.value]} in force yet to give notice under: publish this "
                               "first version without an effective date.", field="effective_at")
    if find(kind, version) is not None:
        raise AlreadyExists(f"{kind.value} version {version!r} is already published")
    scheduled = upcoming(kind, now=now)
    if scheduled:
        last = scheduled[-1]
        if effective_at is None or effective_at < last.takes_effect:
            raise InvalidInput(f"Version {last.version} takes effect on {when(last.takes_effect)}. A new version "
                               f"cannot take effect before it: make this one significant with an effective date "
                               f"on or after {when(last.takes_effect)} (it then replaces {last.version}).",
                               field="effective_at")
    document = LegalDocument(kind=kind.value, version=version, body=body, significant=significant,
                             published_at=now, effective_at=effective_at)
    db.session.add(document)
    db.session.flush()
    if actor is not None:
        audit.record(actor, "legal.publish", "legal_document", document.id, reason=reason,
                     after={"kind": kind.value, "version": version, "significant": significant,
                            "effective_at": effective_at, "characters": len(body)})
    return document


def _clean_version(version: str) -> str:
    version = (version or "").strip()
    if not version or len(version) > 40:
        raise InvalidInput("version must be 1-40 characters", field="version")
    if "/" in version or "\\" in version or any(not c.isprintable() for c in version):
        raise InvalidInput("a version label cannot contain slashes or control characters (it is part of the "
                           "page's address)", field="version")
    return version


def _clean_body(body: str) -> str:
    body = (body or "").replace("\r\n", "\n")
    if not body.strip():
        raise InvalidInput("the document is empty", field="body")
    if len(body) > MAX_BODY:
        raise InvalidInput(f"the document is longer than {MAX_BODY:,} characters", field="body")
    return body


def publish_translation(kind: LegalKind, version: str, lang: str, body: str, *, actor: Optional[Actor] = None,
                        reason: Optional[str] = None, now: Optional[datetime] = None) -> LegalDocument:
    """Publish version `version`'s text in `lang` (not English), once the English version exists.

    The translation takes the English version's significance and dates: it changes nothing about
    what is in force or who must accept what, and mails no one. It cannot be replaced; a
    corrected text is a new version.
    """
    if lang == ORIGINAL or lang not in i18n.LANGUAGES:
        others = ", ".join(code for code in i18n.LANGUAGES if code != ORIGINAL)
        raise InvalidInput(f"a translation's language must be one of {others}, got {lang!r} (publish the English "
                           "text without a language)", field="lang")
    version = _clean_version(version)
    body = _clean_body(body)
    english = find(kind, version)
    if english is None:
        raise InvalidInput(f"there is no {kind.value} version {version!r} in English yet: publish the English text "
                           "first, then its translation under the same version", field="version")
    if translation(english, lang) is not None:
        raise AlreadyExists(f"{kind.value} version {version!r} is already published in {lang}")
    document = LegalDocument(kind=kind.value, version=version, lang=lang, body=body,
                             significant=english.significant, published_at=now or utcnow(),
                             effective_at=english.effective_at)
    db.session.add(document)
    db.session.flush()
    if actor is not None:
        audit.record(actor, "legal.translate", "legal_document", document.id, reason=reason,
                     after={"kind": kind.value, "version": version, "lang": lang, "characters": len(body)})
    return document


def translation(document: LegalDocument, lang: str) -> Optional[LegalDocument]:
    """The text of `document`'s version in `lang` (the document itself for its own language), or None."""
    if document.lang == lang:
        return document
    return db.session.scalar(select(LegalDocument).where(LegalDocument.kind == document.kind,
                                                         LegalDocument.version == document.version,
                                                         LegalDocument.lang == lang))


def in_language(document: LegalDocument, lang: str) -> tuple[LegalDocument, bool]:
    """What a reader of `lang` is shown of `document`: (its translation, False), or (the English
    text, True) when it has none in that language."""
    found = translation(document, lang)
    return (found, False) if found is not None else (translation(document, ORIGINAL) or document, lang != document.lang)


def languages(document: LegalDocument) -> list[str]:
    """The languages `document`'s version is published in, English first."""
    found = db.session.scalars(select(LegalDocument.lang).where(LegalDocument.kind == document.kind,
                                                                LegalDocument.version == document.version))
    return sorted(found, key=lambda lang: (lang != ORIGINAL, lang))


def current(kind: LegalKind, now: Optional[datetime] = None) -> Optional[LegalDocument]:
    """The version in force: the last one to have taken effect."""
    return db.session.scalar(select(LegalDocument)
                             .where(LegalDocument.kind == kind.value, _original, _takes_effect <= (now or utcnow()))
                             .order_by(_takes_effect.desc(), LegalDocument.published_at.desc(),
                                       LegalDocument.id.desc()).limit(1))


def newest(kind: LegalKind) -> Optional[LegalDocument]:
    """The last version published, in force or not (the text the console's editor starts from)."""
    return db.session.scalar(select(LegalDocument).where(LegalDocument.kind == kind.value, _original)
                             .order_by(LegalDocument.published_at.desc(), LegalDocument.id.desc()).limit(1))


def upcoming(kind: Optional[LegalKind] = None, now: Optional[datetime] = None) -> list[LegalDocument]:
    """Versions published but not in force yet, soonest first (of one kind, or of all)."""
    query = select(LegalDocument).where(_original, _takes_effect > (now or utcnow()))
    if kind is not None:
        query = query.where(LegalDocument.kind == kind.value)
    return list(db.session.scalars(query.order_by(_takes_effect, LegalDocument.id)))


@dataclass(frozen=True)
class Announcement:
    kind: str
    version: str
    date: str  # as `when` writes it


def banner() -> list[Announcement]:
    """For the banner on every page: the next scheduled version of each kind. Never fails a page."""
    try:
        shown: dict[str, Announcement] = {}
        for document in upcoming():
            shown.setdefault(document.kind, Announcement(document.kind, document.version,
                                                         when(document.takes_effect)))
        return list(shown.values())
    except SQLAlchemyError as exc:  # an error page rendered while the database is away
        from .database import unavailable
        log.warning("could not look up scheduled legal changes", exc_info=not unavailable(exc))
        return []


def versions(kind: LegalKind) -> list[LegalDocument]:
    return list(db.session.scalars(select(LegalDocument).where(LegalDocument.kind == kind.value, _original)
                                   .order_by(LegalDocument.published_at.desc(), LegalDocument.id.desc())))


def find(kind: LegalKind, version: str) -> Optional[LegalDocument]:
    return db.session.scalar(select(LegalDocument).where(LegalDocument.kind == kind.value, _original,
                                                         LegalDocument.version == version))


_HEADING = re.compile(r"<(/?)h([1-6])\b")


def render(document: Union[LegalDocument, str]) -> Markup:
    """Operator-written Markdown (a document, or a draft's text) as HTML; raw HTML in it is escaped, not trusted."""
    body = document if isinstance(document, str) else document.body
    return richtext.render(body, tables=True)


def demote(html: Markup) -> Markup:
    """Rendered Markdown with every heading one level down (h1 to h2, ..., h6 stays h6), for a page whose
    own <h1> comes before the document. Only Markdown makes tags here, so the headings are found exactly."""
    return Markup(_HEADING.sub(lambda m: f"<{m.group(1)}h{min(int(m.group(2)) + 1, 6)}", str(html)))


def top_headings(html: str) -> int:
    """How many <h1> rendered Markdown has."""
    return len(re.findall(r"<h1\b", str(html)))


def accept(user: User, document: LegalDocument, ip: Optional[str]) -> None:
    db.session.add(TermsAcceptance(user_id=user.id, document_id=document.id, accepted_at=utcnow(), ip=ip))


def decline(user: User, document: LegalDocument, ip: Optional[str], reason: Optional[str] = None) -> LegalDecline:
    """Record that the user declined `document`; declining the same version again keeps the first record."""
    found = db.session.scalar(select(LegalDecline).where(LegalDecline.user_id == user.id,
                                                         LegalDecline.document_id == document.id))
    if found is not None:
        return found
    row = LegalDecline(user_id=user.id, document_id=document.id, declined_at=utcnow(), ip=ip,
                       reason=(reason or "").strip()[:2000] or None)
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:  # the same person declining in two tabs at once
        return db.session.scalar(select(LegalDecline).where(LegalDecline.user_id == user.id,
                                                            LegalDecline.document_id == document.id))
    return row


def latest_acceptance(user: User, kind: LegalKind = LegalKind.TERMS) -> Optional[TermsAcceptance]:
    return db.session.scalar(select(TermsAcceptance).join(LegalDocument)
                             .where(TermsAcceptance.user_id == user.id, LegalDocument.kind == kind.value)
                             .order_by(LegalDocument.published_at.desc(), TermsAcceptance.id.desc()).limit(1))


def _pending(user: User, kind: LegalKind, now: datetime) -> Optional[LegalDocument]:
    in_force = current(kind, now)
    if in_force is None:
        return None
    accepted = latest_acceptance(user, kind)
    if accepted is not None and accepted.document_id == in_force.id:
        return None
    since = accepted.document.takes_effect if accepted else None
    if since is None and kind is LegalKind.PRIVACY:
        # Sign-up accepts the terms explicitly and the privacy policy then in force by reference,
        # which nothing records: only significant versions in force since the account began count.
        since = user.created_at
    # A significant version that took effect after the one they accepted, and is in force now
    # (one still scheduled is not asked for before its date).
    query = select(LegalDocument.id).where(LegalDocument.kind == kind.value, _original,
                                           LegalDocument.significant.is_(True), _takes_effect <= now)
    if since is not None:
        query = query.where(_takes_effect > since)
    return in_force if db.session.scalar(query.limit(1)) else None


def needs_consent(user: User, now: Optional[datetime] = None) -> Optional[LegalDocument]:
    """The document the user must accept before going on: the terms in force, then the privacy
    policy in force, when a significant version of it took effect after the one they accepted."""
    now = now or utcnow()
    return _pending(user, LegalKind.TERMS, now) or _pending(user, LegalKind.PRIVACY, now)


# -- what the console and `status` show ---------------------------------------------------------

@dataclass(frozen=True)
class VersionRow:
    document: LegalDocument
    accepted: int  # people who accepted this version
    declined: int  # people who declined it at the consent page
    notified: int  # advance notices mailed for it


def _notice_prefix(document_id: int) -> str:
    return f"legal-notice:{document_id}:"


def version_rows(kind: LegalKind) -> list[VersionRow]:
    """Every version of `kind`, newest first, with its acceptance, decline and notice counts."""
    documents = versions(kind)
    ids = [d.id for d in documents]
    if not ids:
        return []
    accepted = dict(db.session.execute(
        select(TermsAcceptance.document_id, func.count(func.distinct(TermsAcceptance.user_id)))
        .where(TermsAcceptance.document_id.in_(ids)).group_by(TermsAcceptance.document_id)).all())
    declined = dict(db.session.execute(
        select(LegalDecline.document_id, func.count()).where(LegalDecline.document_id.in_(ids))
        .group_by(LegalDecline.document_id)).all())
    notified = {d.id: notices_sent(d) for d in documents if d.effective_at is not None}
    return [VersionRow(d, accepted.get(d.id, 0), declined.get(d.id, 0), notified.get(d.id, 0)) for d in documents]


def acceptances(document: LegalDocument):
    """A query of (TermsAcceptance, email) for one version, newest first (for `paginate`)."""
    return (select(TermsAcceptance, User.email).join(User, User.id == TermsAcceptance.user_id)
            .where(TermsAcceptance.document_id == document.id).order_by(TermsAcceptance.id.desc()))


def declines(document: LegalDocument):
    """A query of (LegalDecline, email, accepted later) for one version, newest first (for `paginate`)."""
    later = exists().where(TermsAcceptance.user_id == LegalDecline.user_id,
                           TermsAcceptance.document_id == LegalDecline.document_id)
    return (select(LegalDecline, User.email, later.label("accepted_later"))
            .join(User, User.id == LegalDecline.user_id)
            .where(LegalDecline.document_id == document.id).order_by(LegalDecline.id.desc()))


# -- advance notice by mail ---------------------------------------------------------------------

def _audience() -> tuple:
    """Who the notice goes to: active users with a confirmed address (conditions on User)."""
    return (User.status == UserStatus.ACTIVE.value, User.is_verified.is_(True))


def notices_sent(document: LegalDocument) -> int:
    prefix = _notice_prefix(document.id)
    return db.session.scalar(select(func.count()).select_from(Notice)
                             .where(Notice.key.startswith(prefix, autoescape=True))) or 0


def notice_audience(document: LegalDocument) -> int:
    """How many people the notice of `document` goes to (those already mailed included)."""
    return db.session.scalar(select(func.count(User.id)).where(*_audience())) or 0


def request_notices(document: LegalDocument, actor: Actor) -> None:
    """Record that the operator asked for the notice of `document` to be (re)sent; the caller then
    runs `send_notices` after the commit. Only a version still to take effect has notice to give."""
    if document.effective_at is None:
        raise InvalidInput(f"version {document.version} took effect when it was published: there is no advance "
                           "notice to send")
    if not document.is_upcoming:
        raise InvalidInput(f"version {document.version} took effect on {when(document.takes_effect)}: advance "
                           "notice can no longer be given")
    audit.record(actor, "legal.notify", "legal_document", document.id,
                 after={"kind": document.kind, "version": document.version, "effective_at": document.effective_at})


def send_notices(document_id: int, *, batch_size: int = NOTICE_BATCH) -> int:
    """Mail every active, verified user not mailed yet that `document_id` takes effect on its date;
    returns how many were mailed now. Batched and resumable (see the module docstring); stops once
    the date has passed. Runs its own transactions: call it outside one (the background sender, a command)."""
    sent, after = 0, 0
    while True:
        with atomic():
            document = db.session.get(LegalDocument, document_id)
            if document is None or document.effective_at is None or not document.is_upcoming:
                return sent
            prefix = _notice_prefix(document.id)
            key = literal(prefix, String).concat(cast(User.id, String))
            rows = db.session.execute(
                select(User.id, User.email, User.locale, Account.id.label("account_id"))
                .outerjoin(Account, Account.user_id == User.id)
                .where(*_audience(), User.id > after, ~exists().where(Notice.key == key))
                .order_by(User.id).limit(batch_size)).all()
            claimed = [(row.email, row.locale) for row in rows if notices.once(f"{prefix}{row.id}", row.account_id)]
            written: dict[str, tuple[str, str]] = {}  # language -> (subject, body): one rendering per language
            for _to, locale in claimed:
                language = mail.language_for(locale)
                if language not in written:
                    with mail.localized(language):
                        written[language] = _notice_mail(document)
        if not rows:
            return sent
        # After the commit: a rollback never leaves a mail about a claim that did not happen.
        for to, locale in claimed:
            language = mail.language_for(locale)
            with mail.localized(language):
                mail.send(to, *written[language])
        sent += len(claimed)
        after = rows[-1].id


def _notice_mail(document: LegalDocument) -> tuple[str, str]:
    """The subject and body of the advance notice of `document`, in the current language."""
    moment = document.takes_effect.astimezone(timezone.utc)
    date = i18n.day(moment) if moment.time() == time() else _("%(time)s UTC", time=i18n.minute(moment))
    kind = document.kind
    if kind == LegalKind.TERMS.value:
        title, subject = _("terms of service"), _("Our terms of service change on %(date)s", date=date)
    elif kind == LegalKind.PRIVACY.value:
        title, subject = _("privacy policy"), _("Our privacy policy changes on %(date)s", date=date)
    else:
        title, subject = _("refund policy"), _("Our refund policy changes on %(date)s", date=date)
    body = render_template("mail/terms_changing.txt", title=title, version=document.version, date=date,
                           consent=kind != LegalKind.REFUND_POLICY.value,
                           link=links.public_url(f"pages.{kind}", version=document.version),
                           current=links.public_url(f"pages.{kind}"), contact=links.public_url("pages.contact"))
    return subject, body


def after_publish(document: LegalDocument) -> bool:
    """Whether publishing `document` calls for the advance notice mail (a scheduled significant change)."""
    return document.effective_at is not None and document.is_upcoming



def resume_notices() -> int:
    """Finish the advance notice of every version still to take effect (for the periodic job: a
    restart that stopped the background sender leaves no one unmailed for long); returns how many
    were mailed."""
    with atomic():
        scheduled = [d.id for d in upcoming() if d.effective_at is not None]
    return sum(send_notices(document_id) for document_id in scheduled)
