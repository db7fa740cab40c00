"""Branding from the configuration: the site's name in the header, titles, mails, the authenticator
entry and payment descriptions; the operator's identity on the legal pages."""
import pytest
from sqlalchemy.exc import OperationalError

from portal import sitesettings, twofactor
from portal.audit import Actor
from portal.config import ConfigError, load
from portal.database import atomic
from tests.factories import make_user
from tests.web.helpers import outbox, publish_terms, register

BRANDED = {"SITE_NAME": "Acme AI", "CONTACT_EMAIL": "help@acme.example", "OPERATOR_NAME": "Acme Ltd",
           "OPERATOR_ADDRESS": "1 Main Street, Springfield", "MAIL_FROM": "Robot <robot@acme.example>"}


def brand_link(name: str) -> str:
    """The end of the header's home link (after the logo mark): the site's name."""
    return f'<span translate="no">{name}</span></a>'


@pytest.fixture
def app_config():
    return BRANDED


def test_the_configured_name_replaces_tollgate_everywhere_on_pages(app, client):
    publish_terms("v1")
    for path in ("/", "/pricing", "/login", "/register", "/terms", "/privacy", "/legal/refunds", "/contact",
                 "/status"):
        page = client.get(path).get_data(as_text=True)
        assert "Tollgate" not in page, path
        assert brand_link("Acme AI") in page and "· Acme AI</title>" in page, path


def test_the_legal_pages_say_who_runs_the_site(app, client):
    publish_terms("v1")
    for path in ("/terms", "/privacy", "/legal/refunds"):
        page = client.get(path).get_data(as_text=True)
        assert "Who runs Acme AI" in page and "Acme Ltd" in page and "1 Main Street, Springfield" in page, path
        assert '<a href="mailto:help@acme.example">help@acme.example</a>' in page


def test_mail_is_sent_under_the_site_name_and_signed(app, client):
    publish_terms("v1")
    assert register(client).status_code in (200, 302)
    [message] = [m for m in outbox(app) if m["To"] == "new@example.com"]
    assert message["From"] == "Acme AI <robot@acme.example>"  # MAIL_FROM's address, the site's name
    body = message.get_content()
    assert body.startswith("Welcome to Acme AI.") and "Tollgate" not in body
    assert body.rstrip().endswith("-- \nAcme AI\nAcme Ltd, 1 Main Street, Springfield\nContact: help@acme.example")


def test_the_authenticator_entry_bears_the_site_name(app):
    user = make_user("two@example.com")
    assert "issuer=Acme%20AI" in twofactor.provisioning_uri(user, twofactor.new_secret())


def test_the_console_overrides_the_configuration_and_an_empty_value_restores_it(app, client):
    with atomic():
        sitesettings.save_branding(Actor.cli(), {"site_name": "Beta Gate", "operator_name": ""})
    page = client.get("/terms").get_data(as_text=True)
    assert brand_link("Beta Gate") in page and "Acme Ltd" in page
    with atomic():
        sitesettings.save_branding(Actor.cli(), {"site_name": ""})
    assert brand_link("Acme AI") in client.get("/").get_data(as_text=True)


def test_user_text_in_the_name_is_escaped(app, client):
    with atomic():
        sitesettings.save_branding(Actor.cli(), {"site_name": "<b>Bold</b> & Co"})
    page = client.get("/").get_data(as_text=True)
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp; Co" in page and "<b>Bold" not in page


def test_pages_render_with_the_configured_branding_when_the_settings_cannot_be_read(app, client, monkeypatch):
    def unreadable():
        raise OperationalError("SELECT", {}, Exception("database is down"))
    monkeypatch.setattr(sitesettings, "stored", unreadable)
    page = client.get("/login")
    assert page.status_code == 200 and brand_link("Acme AI") in page.get_data(as_text=True)


@pytest.mark.one_backend
def test_the_default_name_comes_from_mail_from_or_is_tollgate(tmp_path):
    assert load(str(tmp_path), {})["SITE_NAME"] == "Tollgate"
    assert load(str(tmp_path), {"MAIL_FROM": "Gatekeeper <g@example.com>"})["SITE_NAME"] == "Gatekeeper"
    assert load(str(tmp_path), {"MAIL_FROM": "g@example.com"})["SITE_NAME"] == "Tollgate"
    assert load(str(tmp_path), {"SITE_NAME": "  My   Site "})["SITE_NAME"] == "My Site"


@pytest.mark.one_backend
@pytest.mark.parametrize("environ, message", [
    ({"CONTACT_EMAIL": "nobody"}, "CONTACT_EMAIL must be an email address"),
    ({"SITE_NAME": "x" * 61}, "SITE_NAME must be at most 60 characters"),
    ({"OPERATOR_ADDRESS": "x" * 301}, "OPERATOR_ADDRESS must be at most 300 characters"),
])
def test_bad_branding_settings_are_named(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message):
        load(str(tmp_path), environ)
