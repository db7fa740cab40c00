"""Demo data for `make run`: an operator, a user with credit and a key, and the offline echo model."""
import os
import secrets
from pathlib import Path
from typing import Optional

from sqlalchemy import select

from . import apikeys, catalog, ledger, legal, users
from .extensions import db
from .models import EntryKind, LegalKind, User
from .pricing import Price

ADMIN_EMAIL = "admin@example.com"
USER_EMAIL = "demo@example.com"
MODEL = "echo-1"
PRICE = Price(input=2_500_000, output=10_000_000)  # $2.50 / $10 per million tokens
GRANT = 5_000_000  # $5.00
CREDENTIALS_FILE = "demo-credentials.txt"
DEMO_TERMS = """# Terms of service (demo)

This is a local demonstration. Replace these terms with your own:
`flask --app wsgi terms publish TERMS.md --version 2026-01`.

- Prepaid credit is used for API calls at the prices on the pricing page.
- Credit expires 12 months after your last top-up.
- Unused credit is refunded on request.
"""
DEMO_PRIVACY = """# Privacy policy (demo)

We keep your email address, your API keys' hashes and a record of each call (time, model,
tokens, cost, IP address) to bill you and to prevent abuse. Replace this text with your own:
`flask --app wsgi privacy publish PRIVACY.md --version 2026-01`.
"""


def seed(instance_path: str) -> Optional[str]:
    """Create the demo data unless it exists; return the text to show the newcomer, or None if it existed."""
    if db.session.scalar(select(User.id).where(User.email_normalized == ADMIN_EMAIL)):
        return None
    admin_password = secrets.token_urlsafe(12)
    user_password = secrets.token_urlsafe(12)
    users.create_user(ADMIN_EMAIL, admin_password, admin=True, verified=True)
    user = users.create_user(USER_EMAIL, user_password, verified=True)
    db.session.flush()
    ledger.credit(user.account.id, GRANT, EntryKind.GRANT, memo="demo credit", reference="demo-seed-grant")
    _, key = apikeys.issue(user, "demo")
    legal.publish(LegalKind.TERMS, "demo-1", DEMO_TERMS)
    legal.publish(LegalKind.PRIVACY, "demo-1", DEMO_PRIVACY)
    catalog.add_upstream("echo", "echo")
    catalog.set_model(MODEL, "echo", PRICE, max_output_tokens=1024)
    text = (
        "Demo data (development only; created once, kept in the instance folder):\n"
        f"  operator : {ADMIN_EMAIL} / {admin_password}\n"
        f"  user     : {USER_EMAIL} / {user_password}  ($5.00 of credit)\n"
        f"  API key  : {key}\n"
        f"  model    : {MODEL} (offline echo; $2.50 in / $10.00 out per million tokens)\n"
        "  console  : log in as the operator, turn on two-factor (Account), log in again, open Console (/admin)\n"
    )
    path = Path(instance_path) / CREDENTIALS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return text


def credentials_text(instance_path: str) -> str:
    path = Path(instance_path) / CREDENTIALS_FILE
    if path.exists():
        return path.read_text()
    return "Demo data already exists (its credentials file is gone; use `flask users create` for new logins).\n"
