"""Outgoing mail: SMTP when SMTP_URL is set, otherwise .eml files in MAIL_OUTBOX (offline default).

SMTP_URL forms: smtp://user:pass@host:587 (STARTTLS when the server offers it),
smtps://user:pass@host:465 (TLS from the start), smtp://host:25 (no login).
"""
import logging
import smtplib
import ssl
import uuid
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from flask import current_app

log = logging.getLogger(__name__)


def compose(to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="tollgate.local")
    message.set_content(body)
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
