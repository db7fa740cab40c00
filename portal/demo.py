"""Demo data for `make run`: an operator, a user with credit and a key, and the offline echo model."""
import os
import secrets
from pathlib import Path
from typing import Optional

from sqlalchemy import select

from . import accounts, apikeys, catalog, ledger
from .extensions import db
from .models import EntryKind, User
from .pricing import Price

ADMIN_EMAIL = "admin@example.com"
USER_EMAIL = "demo@example.com"
MODEL = "echo-1"
PRICE = Price(input=2_500_000, output=10_000_000)  # $2.50 / $10 per million tokens
GRANT = 5_000_000  # $5.00
CREDENTIALS_FILE = "demo-credentials.txt"


def seed(instance_path: str) -> Optional[str]:
    """Create the demo data unless it exists; return the text to show the newcomer, or None if it existed."""
    if db.session.scalar(select(User.id).where(User.email_normalized == ADMIN_EMAIL)):
        return None
    admin_password = secrets.token_urlsafe(12)
    user_password = secrets.token_urlsafe(12)
    accounts.create_user(ADMIN_EMAIL, admin_password, admin=True, verified=True)
    user = accounts.create_user(USER_EMAIL, user_password, verified=True)
    db.session.flush()
    ledger.credit(user.account.id, GRANT, EntryKind.GRANT, memo="demo credit", reference="demo-seed-grant")
    _, key = apikeys.issue(user, "demo")
    catalog.add_upstream("echo", "echo")
    catalog.set_model(MODEL, "echo", PRICE, max_output_tokens=1024)
    text = (
        "Demo data (development only; created once, kept in the instance folder):\n"
        f"  operator : {ADMIN_EMAIL} / {admin_password}\n"
        f"  user     : {USER_EMAIL} / {user_password}  ($5.00 of credit)\n"
        f"  API key  : {key}\n"
        f"  model    : {MODEL} (offline echo; $2.50 in / $10.00 out per million tokens)\n"
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
