"""Mail over real SMTP to a server on loopback (aiosmtpd), and the offline outbox."""
import socket

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from portal import mail


class Inbox(Message):
    def __init__(self):
        super().__init__()
        self.messages = []

    def handle_message(self, message):
        self.messages.append(message)


@pytest.fixture
def smtp_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


def test_smtp_delivery(app, smtp_server):
    port, inbox = smtp_server
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{port}"
    with app.test_request_context():
        mail.send("ada@example.com", "Hello", "Body line")
    [message] = inbox.messages
    assert (message["To"], message["Subject"]) == ("ada@example.com", "Hello")
    assert "Body line" in message.get_payload()


def test_smtp_failure_is_logged_not_raised(app, caplog):
    app.config["SMTP_URL"] = "smtp://127.0.0.1:9"
    with app.test_request_context():
        mail.send("ada@example.com", "Hello", "Body")
    assert "could not deliver mail to ada@example.com" in caplog.text


def test_outbox_when_no_smtp(app, tmp_path):
    app.config["MAIL_OUTBOX"] = str(tmp_path / "out")
    with app.test_request_context():
        mail.send("ada@example.com", "Hi", "Body")
    [path] = (tmp_path / "out").glob("*.eml")
    assert b"Subject: Hi" in path.read_bytes()
