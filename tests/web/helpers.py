"""Reading the mail the app sent (the offline outbox) and pulling links out of it; parallel requests."""
import email
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from portal import legal
from portal.database import atomic
from portal.models import LegalKind

LINK = re.compile(r"https?://\S+")


def outbox(app) -> list[EmailMessage]:
    folder = Path(app.config["MAIL_OUTBOX"])
    if not folder.exists():
        return []
    return [email.message_from_bytes(p.read_bytes(), policy=default) for p in sorted(folder.glob("*.eml"))]


def last_link(app, to: str) -> str:
    messages = [m for m in outbox(app) if m["To"] == to]
    assert messages, f"no mail to {to}"
    return LINK.findall(messages[-1].get_content())[0]


def path_of(link: str) -> str:
    return "/" + link.split("/", 3)[3]


def publish_terms(version="v1", significant=False, kind=LegalKind.TERMS):
    with atomic():
        return legal.publish(kind, version, f"# Terms {version}\n\nBe nice.", significant=significant).id


def register(client, email="new@example.com", password="a long passphrase", accept=True):
    data = {"email": email, "password": password}
    if accept:
        data["accept_terms"] = "y"
    return client.post("/register", data=data)


def in_parallel(count, request):
    """Run `request(i)` for i in range(count) from `count` threads released at once; results in order."""
    barrier = threading.Barrier(count)

    def one(i):
        barrier.wait()
        return request(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))
