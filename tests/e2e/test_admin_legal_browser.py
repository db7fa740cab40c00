"""An admin edits the terms in a real browser (CSRF on): the preview swaps in place, a significant
change is published with an effective date, everyone is mailed and the banner names the date."""
from datetime import datetime, timedelta, timezone

import pytest

from portal import notices
from tests.e2e.conftest import CHROMIUM, log_in_admin
from tests.factories import make_admin
from tests.web.helpers import outbox, publish_terms

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (make test and .ci/run install it)")


@pytest.fixture
def app_config():
    return {"WTF_CSRF_ENABLED": True}


def test_an_admin_previews_and_schedules_new_terms(app, gateway, phone_page):
    publish_terms("v1")
    admin = make_admin("admin@example.com")
    date = (datetime.now(timezone.utc) + timedelta(days=30)).date().isoformat()
    page = phone_page  # the operator's phone
    log_in_admin(page, gateway, admin)
    page.goto(f"{gateway}/admin/legal")
    page.get_by_role("link", name="Edit and publish a new version").first.click()
    page.get_by_label("Text (Markdown)").fill("# Fresh terms\n\n<b>not bold</b> and **bold**")
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_test_id("preview")
    preview.get_by_role("heading", name="Fresh terms").wait_for()
    assert "<b>not bold</b>" in preview.inner_text()  # shown as text, not run
    assert page.url.endswith("/admin/legal/terms")  # swapped in place by htmx
    page.get_by_label("Version label").fill("v2")
    page.get_by_role("checkbox", name="Significant change").check()
    page.get_by_label("Effective date").fill(date)
    page.get_by_label("I have read the preview").check()
    page.get_by_role("button", name="Publish").click()
    page.get_by_text(f"Published version v2: it takes effect on {date}.").wait_for()
    assert f"New terms take effect on {date}" in page.get_by_test_id("legal-banner").inner_text()
    notices.drain()
    assert [m["To"] for m in outbox(app)] == [admin.email]
