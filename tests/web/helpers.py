"""Reading the mail the app sent (the offline outbox) and pulling links out of it; terms and users
who accepted them; parallel requests."""
import email
import http.client
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from datetime import timedelta
from urllib.parse import urlsplit

from portal import legal
from portal.database import atomic
from portal.extensions import db
from portal.models import LegalKind, User, utcnow
from tests.factories import make_user

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


def user_who_accepted_the_terms(auth):
    """Make the default user, record that they accepted the current terms, and log in as them."""
    user = make_user()
    with atomic():
        legal.accept(db.session.get(User, user.id), legal.current(LegalKind.TERMS), "127.0.0.1")
    assert auth.login().status_code == 302
    return user


def something_on_every_console_page() -> dict:
    """A customer (alice@example.com, $5 of credit, a call an hour ago) with a refund request open; a
    contact message, an incident and terms v1: a row on every console page. Returns them by name."""
    from portal import inbox, status
    from portal.audit import Actor
    from tests.domain.test_dashboards import Calls
    from tests.domain.test_refunds_approval import ask  # (here: that module imports this one)
    from tests.factories import make_model

    model = make_model("echo-1")
    person = make_user("alice@example.com", credit=5_000_000)
    Calls().add(person, model, utcnow() - timedelta(hours=1), cost=1_234_567)
    refund_id = ask(person)
    message_id = inbox.submit(email="bob@example.com", subject="Invoice", message="Where is it?",
                              category="billing").message.id
    with atomic():
        incident_id = status.add(Actor.cli(), "Slow answers", "Being looked at.").id
        legal.publish(LegalKind.TERMS, "v1", "# Terms\n\nBe kind.")
    return {"model": model, "person": person, "refund": refund_id, "message": message_id, "incident": incident_id}


def register(client, email="new@example.com", password="a long passphrase", accept=True):
    """Send the sign-up form; a success (a 303 to the "check your inbox" page) is followed to that page."""
    data = {"email": email, "password": password}
    if accept:
        data["accept_terms"] = "y"
    return client.post("/register", data=data, follow_redirects=True)


class MeetingCounters:
    """The app's rate-limit counters, where each thread's first call returns only once `parties`
    threads have made theirs: every parallel request has taken its first step at the throttle
    before any goes on, so one that reads the count before taking it lets them all through, every
    time, and one that takes first lets exactly the limit through."""

    def __init__(self, real, parties: int):
        self.real, self.barrier, self.arrived = real, threading.Barrier(parties), threading.local()

    def __getattr__(self, name):
        method = getattr(self.real, name)

        def call(*args):
            result = method(*args)
            if not getattr(self.arrived, "yes", False):
                self.arrived.yes = True
                self.barrier.wait(timeout=30)  # a request that never gets here fails the test, not hangs it
            return result
        return call


def meet_at_the_counters(monkeypatch, app, parties: int) -> None:
    """Make the next `parties` requests (each on its own thread) meet at their first counter call."""
    real = app.extensions["tollgate.counters"]
    monkeypatch.setitem(app.extensions, "tollgate.counters", MeetingCounters(real, parties))


def in_parallel(count, request):
    """Run `request(i)` for i in range(count) from `count` threads released at once; results in order."""
    barrier = threading.Barrier(count)

    def one(i):
        barrier.wait()
        return request(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def call_from(gateway: str, key: str, source: str = "127.0.0.1", model: str = "echo-1"):
    """One chat completion on `model`, sent from the loopback address `source` (127.0.0.0/8 are all
    this machine's): (status, headers, body)."""
    url = urlsplit(gateway)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60, source_address=(source, 0))
    try:
        conn.request("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {key}",
                                                              "Content-Type": "application/json"},
                     body=json.dumps({"model": model, "max_tokens": 16,
                                      "messages": [{"role": "user", "content": "hello"}]}))
        response = conn.getresponse()
        return response.status, response.headers, json.loads(response.read() or b"{}")
    finally:
        conn.close()
