"""Client addresses behind a reverse proxy, through a real second hop.

client (127.0.0.11 / .12) -> a small reverse proxy on loopback that behaves like nginx with
`proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for` (connecting out from 127.0.0.2)
-> waitress serving the app with TRUSTED_PROXY_HOPS=1, TRUSTED_PROXY=127.0.0.2.
Linux routes all of 127.0.0.0/8 to loopback, so each address is a distinct peer.
"""
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import ContactMessage
from tests.factories import PASSWORD, make_user
from tests.fake_upstream import POLL


pytestmark = pytest.mark.slow  # serves the app and a proxy on loopback

PROXY_ADDRESS = "127.0.0.2"
CLIENT_A, CLIENT_B = "127.0.0.11", "127.0.0.12"
SPOOFED = "198.51.100.66"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "content-length", "host"}


@pytest.fixture
def app_config():
    return {"TRUSTED_PROXY_HOPS": 1, "TRUSTED_PROXY": PROXY_ADDRESS}


@pytest.fixture
def reverse_proxy(gateway):
    """Base URL of an nginx-like proxy in front of `gateway`: appends the peer to X-Forwarded-For."""
    upstream = urlsplit(gateway)

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Host"] = self.headers["Host"]                       # proxy_set_header Host $host
            prior = self.headers.get("X-Forwarded-For")
            peer = self.client_address[0]
            headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer  # $proxy_add_x_forwarded_for
            headers["X-Forwarded-Proto"] = "https"                       # $scheme, TLS ended here
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30,
                                              source_address=(PROXY_ADDRESS, 0))
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            finally:
                conn.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def post(base: str, path: str, form: dict, *, source: str, headers=None) -> int:
    """POST a form to base+path from the local address `source`; the status code."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30, source_address=(source, 0))
    try:
        conn.request("POST", path, body=urlencode(form),
                     headers={"Host": "localhost", "Content-Type": "application/x-www-form-urlencoded",
                              **(headers or {})})
        return conn.getresponse().status
    finally:
        conn.close()


def contact(base: str, source: str, headers=None) -> str:
    """Send the contact form; the client address the app stored with it."""
    status = post(base, "/contact", {"email": "a@example.com", "subject": "hi", "message": "hello"},
                  source=source, headers=headers)
    assert status == 302
    db.session.rollback()
    return db.session.scalars(select(ContactMessage.ip).order_by(ContactMessage.id.desc())).first()


def test_the_app_sees_the_address_the_proxy_added(reverse_proxy):
    assert contact(reverse_proxy, CLIENT_A) == CLIENT_A
    assert contact(reverse_proxy, CLIENT_B) == CLIENT_B
    # What the client itself put in X-Forwarded-For comes before the proxy's entry: one hop
    # trusted means only the last entry is believed.
    assert contact(reverse_proxy, CLIENT_A, {"X-Forwarded-For": SPOOFED}) == CLIENT_A
    assert contact(reverse_proxy, CLIENT_A, {"X-Forwarded-For": f"{SPOOFED}, 10.0.0.1"}) == CLIENT_A


def test_forwarded_headers_from_anyone_but_the_proxy_are_dropped(gateway):
    assert contact(gateway, CLIENT_A, {"X-Forwarded-For": SPOOFED}) == CLIENT_A
    assert contact(gateway, "127.0.0.1", {"X-Forwarded-For": SPOOFED, "Forwarded": f"for={SPOOFED}"}) == "127.0.0.1"


def test_host_comes_from_the_host_header_not_x_forwarded_host(reverse_proxy):
    assert contact(reverse_proxy, CLIENT_A, {"X-Forwarded-Host": "attacker.example"}) == CLIENT_A
    refused = post(reverse_proxy, "/contact", {"email": "a@example.com", "subject": "hi", "message": "hello"},
                   source=CLIENT_A, headers={"Host": "attacker.example"})
    assert refused == 400


def test_failed_logins_from_one_client_do_not_lock_out_another(reverse_proxy):
    make_user()
    blocked = False
    for i in range(50):  # until the per-address limit answers, whatever it is
        status = post(reverse_proxy, "/login", {"email": f"nobody{i}@example.com", "password": "wrong password!"},
                      source=CLIENT_A)
        if status == 429:
            blocked = True
            break
        assert status == 422
    assert blocked, "the per-address login limit never answered"
    right = {"email": "person@example.com", "password": PASSWORD}
    assert post(reverse_proxy, "/login", right, source=CLIENT_B) == 302
    assert post(reverse_proxy, "/login", right, source=CLIENT_A) == 429
