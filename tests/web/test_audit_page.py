"""The console's audit log page: newest first, filtered, paginated."""
from portal import audit
from portal.database import atomic


def test_the_log_lists_entries_newest_first_and_filters_them(app, client, auth):
    auth.admin()
    with atomic():
        audit.record(audit.Actor.cli(), "user.suspend", "user", 5, reason="spam", before={"status": "active"},
                     after={"status": "suspended"})
        audit.record(audit.Actor.cli(), "price.set", "model", "gpt-x", reason="new list")
    page = client.get("/admin/audit").get_data(as_text=True)
    assert page.index("<code>price.set</code>") < page.index("<code>user.suspend</code>")
    assert "active → suspended" in page and "spam" in page
    only = client.get("/admin/audit?action=user.").get_data(as_text=True)
    assert "<code>user.suspend</code>" in only and "<code>price.set</code>" not in only
    target = client.get("/admin/audit?target_type=model&target_id=gpt-x").get_data(as_text=True)
    assert "<code>price.set</code>" in target and "<code>user.suspend</code>" not in target


def test_the_log_paginates(app, client, auth):
    auth.admin()
    with atomic():
        for n in range(53):
            audit.record(audit.Actor.cli(), "test.action", "thing", n)
    first = client.get("/admin/audit?action=test.").get_data(as_text=True)
    assert "<code>52</code>" in first and "<code>2</code>" not in first and 'rel="next"' in first
    second = client.get("/admin/audit?action=test.&page=2").get_data(as_text=True)
    assert "<code>2</code>" in second and "<code>52</code>" not in second and 'rel="prev"' in second
    assert "action=test." in second  # the filter survives paging
