"""Outgoing mail: SMTP when SMTP_URL is set, otherwise .eml files in MAIL_OUTBOX (offline default).

SMTP_URL forms: smtp://user:pass@host:587 (STARTTLS when the server offers it),
smtps://user:pass@host:465 (TLS from the start), smtp://host:25 (no login).

Every mail is written in its recipient's language: render the subject and the body (and send,
which adds the translated signature) inside `localized(user.locale)`. An account without a choice
gets the language of the request that caused the mail, or English outside a request (CLI jobs,
the background sender). Mail to the operator is always English: `localized("en")`.
"""
import logging
import smtplib
import ssl
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _

from . import i18n, sitesettings

log = logging.getLogger(__name__)


def language_for(locale: str | None) -> str:
    """The language to write to someone in: their account's choice, else this request's, else English."""
    return locale if locale in i18n.LANGUAGES else i18n.language()


@contextmanager
def localized(locale: str | None):
    """Render (and send) the mail written inside this block in `locale`'s language (see language_for)."""
    with force_locale(language_for(locale)):
        yield


def sender(brand: sitesettings.Branding) -> str:
    """MAIL_FROM's address under the site's name as the display name (the console can rename the site)."""
    _, address = parseaddr(current_app.config["MAIL_FROM"])
    return formataddr((brand.site_name, address or "no-reply@localhost"))


def signature(brand: sitesettings.Branding) -> str:
    """The closing lines of every mail: the site, and who runs it when the operator said so."""
    lines = [f"-- \n{brand.site_name}"]
    identity = ", ".join(part for part in (brand.operator_name, brand.operator_address) if part)
    if identity:
        lines.append(identity)
    if brand.contact_email:
        lines.append(_("Contact: %(address)s", address=brand.contact_email))
    return "\n".join(lines)


def compose(to: str, subject: str, body: str) -> EmailMessage:
    brand = sitesettings.branding()
    message = EmailMessage()
    message["From"] = sender(brand)
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="tollgate.local")
    message.set_content(f"{body.rstrip()}\n\n{signature(brand)}\n")
    return message


def _smtp(url: str, message: EmailMessage) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("SMTP_URL must look like smtp://user:pass@host:587 or smtps://host:465")
    context = ssl.create_default_context()
    if parts.scheme == "smtps":
        client = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=20, context=context)
    else:
        client = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=20)
    with client:
        if parts.scheme == "smtp":
            client.ehlo()
            if client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(message)


def send(to: str, subject: str, body: str) -> None:
    """Deliver a plain-text message. A delivery failure is logged, never raised to the person waiting."""
    message = compose(to, subject, body)
    url = current_app.config["SMTP_URL"]
    try:
        if url:
            _smtp(url, message)
            log.info("mail sent to %s: %s", to, subject)
            return
        outbox = Path(current_app.config["MAIL_OUTBOX"])
        outbox.mkdir(parents=True, exist_ok=True)
        # Microseconds in the name: files sort in the order they were written (tests read "the last mail").
        path = outbox / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
        path.write_bytes(bytes(message))
        log.info("mail to %s written to %s: %s", to, path, subject)
    except (OSError, smtplib.SMTPException, ValueError):
        log.exception("could not deliver mail to %s: %s", to, subject)
