"""`flask inbox messages|handle|reply` and `flask announce send|status`: the console's twins, audited alike."""
import pytest
from sqlalchemy import select

from portal import announcements, inbox
from portal.extensions import db
from portal.models import Announcement, AuditEntry, ContactMessage, ContactReply
from tests.cli.helpers import ok, refused
from tests.factories import make_user
from tests.web.helpers import outbox


def store(**fields) -> int:
    values = {"email": "sender@example.com", "subject": "Hello", "message": "text", "category": "question", **fields}
    return inbox.submit(**values).message.id


def actions(target_type) -> list[tuple[str, str]]:
    db.session.rollback()
    return [(e.action, e.actor) for e in db.session.scalars(
        select(AuditEntry).where(AuditEntry.target_type == target_type).order_by(AuditEntry.id))]


def test_messages_show_category_state_and_filters(app, cli):
    assert "no messages" in ok(cli("inbox", "messages"))
    question = store(subject="How much?")
    abuse = store(category="abuse", subject="Spam from a key", reference="tg_...abcd", message="evil\x1b[2J")
    ok(cli("inbox", "handle", str(question)))
    out = ok(cli("inbox", "messages"))
    assert f"#{abuse} " in out and "[abuse, open]" in out and "concerns tg_…abcd" in out
    assert "[question, handled by cli:" in out
    assert out.index(f"#{abuse} ") < out.index(f"#{question} ")  # open first
    assert "\x1b" not in out and "evil\\x1b[2J" in out
    only_open = ok(cli("inbox", "messages", "--state", "open"))
    assert "Spam from a key" in only_open and "How much?" not in only_open
    only_questions = ok(cli("inbox", "messages", "--category", "question"))
    assert "How much?" in only_questions and "Spam from a key" not in only_questions
    refused(cli("inbox", "messages", "--category", "gossip"), "Invalid value for '--category'")


def test_handle_and_reopen_are_audited_and_say_when_nothing_changed(app, cli):
    message_id = store()
    assert f"message {message_id} is handled" in ok(cli("inbox", "handle", str(message_id)))
    assert "was already handled: nothing changed" in ok(cli("inbox", "handle", str(message_id)))
    assert f"message {message_id} is open again" in ok(cli("inbox", "handle", str(message_id), "--reopen"))
    assert [a for a, _ in actions("contact_message")] == ["contact.handle", "contact.reopen"]
    assert all(who.startswith("cli:") for _, who in actions("contact_message"))
    refused(cli("inbox", "handle", "999"), "there is no contact message 999")


def test_reply_mails_the_sender_stores_the_reply_and_marks_it_handled(app, cli, tmp_path):
    message_id = store(subject="Why 503?")
    body = tmp_path / "reply.txt"
    body.write_text("We were upgrading.\nSorry ✓\n", encoding="utf-8")
    out = ok(cli("inbox", "reply", str(message_id), "--body-file", str(body)))
    assert f"replied to message {message_id}; mailed sender@example.com; marked handled" in out
    mail = outbox(app)[-1]
    assert mail["To"] == "sender@example.com" and mail["Subject"] == "Re: Why 503?"
    assert "We were upgrading.\nSorry ✓" in mail.get_content()
    db.session.rollback()
    [reply] = db.session.scalars(select(ContactReply)).all()
    assert reply.body == "We were upgrading.\nSorry ✓" and reply.author.startswith("cli:")
    assert db.session.get(ContactMessage, message_id).handled_at is not None
    assert [a for a, _ in actions("contact_message")] == ["contact.reply", "contact.handle"]
    # From standard input, kept open.
    ok(cli("inbox", "reply", str(message_id), "--body-file", "-", "--keep-open", input="One more thing.\n"))
    refused(cli("inbox", "reply", str(message_id), "--body-file", "-", input="   \n"), "Write the reply.")
    assert len(db.session.scalars(select(ContactReply)).all()) == 2


def test_announce_send_and_status(app, cli, tmp_path):
    for n in range(3):
        make_user(f"u{n}@example.com")
    body = tmp_path / "body.txt"
    body.write_text("Down tonight at 22:00 UTC.\n", encoding="utf-8")
    assert "no announcements" in ok(cli("announce", "status"))
    refused(cli("announce", "send", "--subject", "Maintenance", "--body-file", str(body), "--audience", "active",
                "--yes"), "No one is in that audience yet")
    aborted = cli("announce", "send", "--subject", "Maintenance", "--body-file", str(body), "--audience", "all",
                  input="n\n")
    assert aborted.exit_code != 0 and "Mail 'Maintenance' to 3 people (all)?" in aborted.output
    db.session.rollback()
    assert db.session.scalars(select(Announcement)).all() == []
    out = ok(cli("announce", "send", "--subject", "Maintenance", "--body-file", str(body), "--audience", "all",
                 input="y\n"))
    assert "queued for 3 people; `serve` sends it, 60 a minute at most" in out
    status = ok(cli("announce", "status"))
    assert "[all] Maintenance — 0 of 3 sent; waiting for the server to send it" in status
    assert announcements.step("w1", limit=1) == 1
    assert "1 of 3 sent; sending (w1)" in ok(cli("announce", "status"))
    assert announcements.step("w1", limit=5) == 2
    assert "3 of 3 sent; finished" in ok(cli("announce", "status"))
    [(action, who)] = actions("announcement")
    assert action == "announcement.send" and who.startswith("cli:")
    assert sorted(m["To"] for m in outbox(app)) == ["u0@example.com", "u1@example.com", "u2@example.com"]


@pytest.mark.parametrize("app_config", [{"ANNOUNCE_PER_MINUTE": 600_000}])  # a 0.1 ms pause: the test waits on nothing
def test_announce_run_sends_in_the_foreground_once(app, cli, tmp_path):
    for n in range(3):
        make_user(f"r{n}@example.com")
    body = tmp_path / "body.txt"
    body.write_text("Hello.\n", encoding="utf-8")
    ok(cli("announce", "send", "--subject", "News", "--body-file", str(body), "--audience", "all", "--yes"))
    assert "sent 3 mail(s); nothing left to send" in ok(cli("announce", "run"))
    assert "sent 0 mail(s); nothing left to send" in ok(cli("announce", "run"))
    assert sorted(m["To"] for m in outbox(app)) == ["r0@example.com", "r1@example.com", "r2@example.com"]
