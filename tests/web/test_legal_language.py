"""Legal documents per language: a version is published in English, then its translations; readers see
theirs, or the English text with a note; consent is to the version; one <h1> on each page."""
import pytest
from sqlalchemy import select

from portal import legal
from portal.database import atomic
from portal.errors import AlreadyExists, InvalidInput
from portal.extensions import db
from portal.models import LegalDocument, LegalKind, TermsAcceptance
from tests.factories import make_user
from tests.web.helpers import publish_terms

ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}
NOTE = "这份文件暂无中文版本，以下为英文原文。"


def translate(version, body, kind=LegalKind.TERMS, lang="zh"):
    with atomic():
        return legal.publish_translation(kind, version, lang, body).id


def test_readers_get_their_language_or_english_with_a_note(client):
    publish_terms("v1")
    publish_terms("p1", kind=LegalKind.PRIVACY)
    translate("v1", "# 条款 v1\n\n友好相处。")
    english = client.get("/terms").get_data(as_text=True)
    assert "<h1>Terms v1</h1>" in english and "条款" not in english and NOTE not in english
    chinese = client.get("/terms", headers=ZH).get_data(as_text=True)
    assert "<h1>条款 v1</h1>" in chinese and "Be nice." not in chinese and NOTE not in chinese
    assert chinese.count("<h1") == 1
    fallback = client.get("/privacy", headers=ZH).get_data(as_text=True)
    assert NOTE in fallback and "<h1>Terms p1</h1>" in fallback and 'lang="en"' in fallback
    assert client.get("/privacy").get_data(as_text=True).count(NOTE) == 0
    # The version list is of versions, not of languages.
    publish_terms("v2")
    assert client.get("/terms/v1", headers=ZH).get_data(as_text=True).count("<li><a href=\"/terms/") == 2


def test_a_translation_follows_its_english_version(app):
    with pytest.raises(InvalidInput, match="in English yet"):
        translate("v1", "# 条款")
    publish_terms("v1", significant=True)
    translate("v1", "# 条款")
    with pytest.raises(AlreadyExists):
        translate("v1", "# 又一份")
    with pytest.raises(InvalidInput, match="language"):
        translate("v1", "# x", lang="en")
    with pytest.raises(InvalidInput, match="language"):
        translate("v1", "# x", lang="fr")
    rows = db.session.scalars(select(LegalDocument).order_by(LegalDocument.id)).all()
    assert [(d.version, d.lang, d.significant) for d in rows] == [("v1", "en", True), ("v1", "zh", True)]
    # What is in force, listed and announced are the English versions.
    assert legal.current(LegalKind.TERMS).lang == "en" and [d.lang for d in legal.versions(LegalKind.TERMS)] == ["en"]
    assert legal.languages(rows[0]) == ["en", "zh"]


def test_consent_in_chinese_accepts_the_version(client, auth):
    publish_terms("v1")
    user = make_user()
    with atomic():
        legal.accept(user, legal.current(LegalKind.TERMS), "127.0.0.1")
    publish_terms("v2", significant=True)
    translate("v2", "# 条款 v2\n\n## 第一条\n\n友好相处。")
    auth.login()
    client.post("/language", data={"lang": "zh", "next": "/"})
    page = client.get("/consent").get_data(as_text=True)
    assert page.count("<h1") == 1 and "<h2>条款 v2</h2>" in page and "<h3>第一条</h3>" in page
    assert NOTE not in page
    assert client.post("/consent", data={"decision": "accept"}).status_code == 302
    db.session.rollback()
    [_, accepted] = db.session.scalars(select(TermsAcceptance).order_by(TermsAcceptance.id)).all()
    assert (accepted.document.version, accepted.document.lang) == ("v2", "en")
    assert legal.needs_consent(db.session.merge(user)) is None


def test_consent_without_a_translation_shows_english_with_the_note(client, auth):
    publish_terms("v1", significant=True)
    make_user()
    auth.login()
    client.post("/language", data={"lang": "zh", "next": "/"})
    page = client.get("/consent").get_data(as_text=True)
    assert NOTE in page and "<h2>Terms v1</h2>" in page and page.count("<h1") == 1


def test_a_document_without_its_own_heading_gets_the_pages(client):
    with atomic():
        legal.publish(LegalKind.PRIVACY, "p1", "We keep little.\n\n# Part one\n\n# Part two")
    page = client.get("/privacy").get_data(as_text=True)
    assert page.count("<h1") == 1 and "<h1>Privacy policy</h1>" in page
    assert "<h2>Part one</h2>" in page and "<h2>Part two</h2>" in page


def test_publish_a_translation_from_the_command_line(app, cli, tmp_path):
    english, chinese = tmp_path / "terms.md", tmp_path / "terms.zh.md"
    english.write_text("# Terms\n")
    chinese.write_text("# 条款\n", encoding="utf-8")
    early = cli("terms", "publish", str(chinese), "--version", "2027-01", "--lang", "zh")
    assert early.exit_code == 1 and "publish the English text first" in early.output
    assert cli("terms", "publish", str(english), "--version", "2027-01").exit_code == 0
    both = cli("terms", "publish", str(chinese), "--version", "2027-01", "--lang", "zh", "--significant")
    assert both.exit_code == 1 and "leave out --significant" in both.output
    done = cli("terms", "publish", str(chinese), "--version", "2027-01", "--lang", "zh")
    assert done.exit_code == 0 and "published the zh text of terms version 2027-01" in done.output
    assert cli("refund-policy", "publish", str(english), "--version", "r1").exit_code == 0
    assert cli("refund-policy", "publish", str(chinese), "--version", "r1", "--lang", "zh").exit_code == 0
    status = cli("terms", "status")
    assert status.exit_code == 0 and "en,zh" in status.output
