"""Contact messages: what people send through the contact form, and the operator's answers.

A message has a category: a question, billing, or an abuse report. An abuse report may name the
key concerned by its hint (`tg_…abcd`, as the portal shows keys) or a request id (`req_...`,
from an error or a usage record). Nobody needs a whole key to report it, and a whole key is
never stored: when one is pasted (into the reference, the subject or the message) it is
replaced by its hint, the key it names is remembered by id, and the sender is warned.

Messages wait in a queue, open first, until the operator marks them handled (and may reopen
them). They are also mailed to OPERATOR_EMAIL when it is set. The operator replies from the
console or the CLI: the reply is stored with the message, mailed to the sender from the site's
address, and audited. Every header a reply carries from user input is checked first: the
address must be one plain address, the subject one line.
"""
import re
import unicodedata
from dataclasses import dataclass
from typing import Optional

from flask import current_app, render_template
from flask_babel import lazy_gettext as _l
from sqlalchemy import case, select

from . import audit, links, mail
from .apikeys import PREFIX, hash_key
from .audit import Actor
from .database import atomic
from .errors import InvalidInput, NotFound
from .extensions import db
from .models import ApiKey, ContactCategory, ContactMessage, ContactReply, UsageRecord, User, utcnow

CATEGORIES = {ContactCategory.QUESTION.value: "A question",
              ContactCategory.BILLING.value: "Billing",
              ContactCategory.ABUSE.value: "Report abuse"}
# The same, for a page in its reader's language (CATEGORIES stays English: the operator's mail, the CLI).
CATEGORY_LABELS = {ContactCategory.QUESTION.value: _l("A question"),
                   ContactCategory.BILLING.value: _l("Billing"),
                   ContactCategory.ABUSE.value: _l("Report abuse")}
MAX_SUBJECT = 200
MAX_MESSAGE = 5000
MAX_REFERENCE = 200  # as typed; what is stored is at most a hint or a request id
MAX_REPLY = 10_000

# A whole key as apikeys.issue makes it; found anywhere, it is cut down to its hint.
_WHOLE_KEY = re.compile(rf"{re.escape(PREFIX)}[A-Za-z0-9]{{40}}(?![A-Za-z0-9])")
_REQUEST_ID = re.compile(r"req_[0-9a-f]{24}")
# A hint as people copy it: "tg_…abcd", "tg_...abcd", "…abcd" or just the last four characters.
_HINT = re.compile(rf"(?:{re.escape(PREFIX)})?(?:…|\.\.\.|\*+)?\s*([A-Za-z0-9]{{4}})")
# One plain address: no list separators, quotes, angle brackets or spaces that would make a
# header name someone else too.
_ADDRESS = re.compile(r"[^@\s,;:<>()\[\]\"\\]+@[^@\s,;:<>()\[\]\"\\]+\.[^@\s,;:<>()\[\]\"\\.]+")


def hint_of(key: str) -> str:
    return f"{PREFIX}…{key[-4:]}"


def one_line(text: Optional[str]) -> str:
    """`text` with control, format and line-break characters made spaces and runs of spaces made one."""
    cleaned = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text or "")
    return " ".join(cleaned.split())


def mail_address(raw: Optional[str]) -> str:
    """One plain email address, or InvalidInput: it goes into a To header."""
    address = (raw or "").strip()
    if (len(address) > 254 or not _ADDRESS.fullmatch(address)
            or any(unicodedata.category(c)[0] in "CZ" for c in address)):
        raise InvalidInput(_l("Enter one email address, like you@example.com."), field="email")
    return address


def _redact(text: str, found: list[str]) -> str:
    def cut(match):
        found.append(match.group(0))
        return hint_of(match.group(0))
    return _WHOLE_KEY.sub(cut, text)


def _key_id_of(whole_key: str) -> Optional[int]:
    return db.session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(whole_key)))


def parse_reference(raw: Optional[str]) -> tuple[Optional[str], Optional[int], bool]:
    """(what to store, the key it names exactly, whether a whole key was pasted) for an abuse report's reference."""
    text = (raw or "").strip()
    if not text:
        return None, None, False
    if len(text) > MAX_REFERENCE:
        raise InvalidInput(_l("Keep the key hint or request id short: the hint (tg_…abcd) or the request id is enough."),
                           field="reference")
    whole = _WHOLE_KEY.search(text)
    if whole:
        return hint_of(whole.group(0)), _key_id_of(whole.group(0)), True
    request = _REQUEST_ID.search(text)
    if request:
        key_id = db.session.scalar(select(UsageRecord.api_key_id).where(UsageRecord.request_id == request.group(0)))
        return request.group(0), key_id, False
    hint = _HINT.fullmatch(text)
    if hint:
        return f"{PREFIX}…{hint.group(1)}", None, False
    raise InvalidInput(_l("Give the key's hint as the portal shows it (%(prefix)s…abcd, its last four characters) "
                          "or a request id (req_ and 24 letters and digits). Leave it empty if you have neither.",
                          prefix=PREFIX), field="reference")


@dataclass(frozen=True)
class Submission:
    message: ContactMessage
    pasted_key: bool  # a whole key was pasted; only its hint was kept


def submit(*, email: str, subject: str, message: str, category: str, reference: Optional[str] = None,
           ip: Optional[str] = None, user_id: Optional[int] = None) -> Submission:
    """Store a contact message, then mail it to OPERATOR_EMAIL (when set); InvalidInput names a bad field."""
    address = mail_address(email)
    if category not in CATEGORIES:
        raise InvalidInput(_l("Choose what your message is about."), field="category")
    subject = one_line(subject)
    if not subject:
        raise InvalidInput(_l("Give your message a subject."), field="subject")
    if len(subject) > MAX_SUBJECT:
        raise InvalidInput(_l("Keep the subject under %(limit)s characters.", limit=MAX_SUBJECT), field="subject")
    body = (message or "").strip()
    if not body:
        raise InvalidInput(_l("Write your message."), field="message")
    if len(body) > MAX_MESSAGE:
        raise InvalidInput(_l("Keep the message under %(limit)s characters.", limit=f"{MAX_MESSAGE:,}"), field="message")
    pasted: list[str] = []
    with atomic():
        stored, key_id, whole = (parse_reference(reference) if category == ContactCategory.ABUSE.value
                                 else (None, None, False))
        subject, body = _redact(subject, pasted)[:MAX_SUBJECT], _redact(body, pasted)
        if key_id is None and pasted:
            key_id = _key_id_of(pasted[0])
        row = ContactMessage(email=address, subject=subject, message=body, category=category, reference=stored,
                             api_key_id=key_id, ip=ip, user_id=user_id, created_at=utcnow())
        db.session.add(row)
    notify_operator(row)
    return Submission(row, whole or bool(pasted))


def notify_operator(message: ContactMessage) -> bool:
    """Mail the message to OPERATOR_EMAIL; False when that is not set."""
    to = current_app.config.get("OPERATOR_EMAIL")
    if not to:
        return False
    with mail.localized("en"):  # to the operator: English, whatever language the sender reads
        mail.send(to, f"[{CATEGORIES[message.category]}] {one_line(message.subject)}",
                  render_template("mail/contact_operator.txt", message=message, label=CATEGORIES[message.category],
                                  url=links.public_url("admin.inbox_message", message_id=message.id)))
    return True


# --- the operator's queue -----------------------------------------------------------------------

STATES = ("open", "handled", "all")


def queue(*, category: str = "", state: str = "all"):
    """A query for messages: open ones first, newest first within each; narrowed by category and state."""
    query = select(ContactMessage).order_by(case((ContactMessage.handled_at.is_(None), 0), else_=1),
                                            ContactMessage.id.desc())
    if category in CATEGORIES:
        query = query.where(ContactMessage.category == category)
    if state == "open":
        query = query.where(ContactMessage.handled_at.is_(None))
    elif state == "handled":
        query = query.where(ContactMessage.handled_at.is_not(None))
    return query


def get(message_id: int) -> ContactMessage:
    message = db.session.get(ContactMessage, message_id)
    if message is None:
        raise NotFound(f"there is no contact message {message_id}")
    return message


def replies(message_id: int) -> list[ContactReply]:
    return list(db.session.scalars(select(ContactReply).where(ContactReply.message_id == message_id)
                                   .order_by(ContactReply.id)))


def reported_owners(message: ContactMessage, limit: int = 10) -> list[User]:
    """The users an abuse report points at: the key it names exactly, or every key with its hint."""
    if message.api_key_id is not None:
        query = select(User).join(ApiKey, ApiKey.user_id == User.id).where(ApiKey.id == message.api_key_id)
    elif message.reference and message.reference.startswith(PREFIX):
        query = (select(User).where(User.id.in_(select(ApiKey.user_id).where(ApiKey.hint == message.reference)))
                 .order_by(User.id))
    else:
        return []
    return list(db.session.scalars(query.limit(limit)))


def _locked(message_id: int) -> ContactMessage:
    message = db.session.scalar(select(ContactMessage).where(ContactMessage.id == message_id).with_for_update()
                                .execution_options(populate_existing=True))
    if message is None:
        raise NotFound(f"there is no contact message {message_id}")
    return message


def set_handled(message_id: int, handled: bool, actor: Actor) -> bool:
    """Mark a message handled (or open again); False when it already was. Call within atomic()."""
    message = _locked(message_id)
    if (message.handled_at is not None) == handled:
        return False
    before = {"handled": message.handled_at is not None}
    message.handled_at, message.handled_by = (utcnow(), actor.label[:254]) if handled else (None, None)
    audit.record(actor, "contact.handle" if handled else "contact.reopen", "contact_message", message.id,
                 before=before, after={"handled": handled})
    return True


def reply(message_id: int, body: str, actor: Actor, *, handled: bool = True) -> ContactReply:
    """Store the operator's reply, mark the message handled (unless `handled` is False), mail the sender.

    Manages its own transaction: the reply and its audit entry are committed before the mail goes.
    """
    body = (body or "").strip()
    if not body:
        raise InvalidInput(_l("Write the reply."), field="body")
    if len(body) > MAX_REPLY:
        raise InvalidInput(_l("Keep the reply under %(limit)s characters.", limit=f"{MAX_REPLY:,}"), field="body")
    with atomic():
        message = _locked(message_id)
        to = mail_address(message.email)  # checked again: older messages predate the check
        row = ContactReply(message_id=message.id, author_id=actor.user_id, author=actor.label[:254], body=body,
                           created_at=utcnow())
        db.session.add(row)
        db.session.flush()
        audit.record(actor, "contact.reply", "contact_message", message.id,
                     after={"reply": row.id, "to": to, "characters": len(body)})
        if handled:
            set_handled(message.id, True, actor)
        subject = reply_subject(message.subject)
    locale = db.session.scalar(select(User.locale).where(User.id == message.user_id)) if message.user_id else None
    with mail.localized(locale or "en"):  # the operator's request decides nothing about the reader's language
        mail.send(to, subject, render_template("mail/contact_reply.txt", message=message, body=body))
    return row


def reply_subject(subject: str) -> str:
    subject = one_line(subject)
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"
