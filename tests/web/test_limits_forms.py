"""Rate limits in the portal: the key owner's form (lower, never raise) and the console's form."""
from sqlalchemy import select

from portal import apikeys
from portal.database import atomic
from portal.extensions import db
from portal.models import Account, ApiKey, AuditEntry, User
from tests.factories import make_user


def own_key(user) -> int:
    with atomic():
        key, _ = apikeys.issue(db.session.get(User, user.id), "main")
    return key.id


def key_row() -> ApiKey:
    db.session.rollback()
    return db.session.scalar(select(ApiKey))


def test_owner_lowers_the_key_limits_but_never_raises_them(app, client, auth):
    app.config.update(RATE_LIMIT_RPM_PER_KEY=100, RATE_LIMIT_TPM_PER_ACCOUNT=5000)
    key_id = own_key(auth.user())
    page = client.get(f"/keys/{key_id}/limits").get_data(as_text=True)
    assert "Requests per minute" in page and 'placeholder="100"' in page and 'placeholder="5,000"' in page
    assert client.post(f"/keys/{key_id}/limits", data={"max_rpm": "10", "max_tpm": "4000"}).status_code == 303
    assert (key_row().max_rpm, key_row().max_tpm) == (10, 4000)
    for data, message in (({"max_rpm": "101"}, "from 1 to 100"), ({"max_tpm": "5001"}, "from 1 to 5,000"),
                          ({"max_rpm": "0"}, "from 1 to 100")):
        response = client.post(f"/keys/{key_id}/limits", data=data)
        assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert key_row().max_rpm == 10
    # The operator raises the key's allowance: the owner may then go higher.
    with atomic():
        db.session.scalar(select(ApiKey)).rpm_limit = 500
    assert client.post(f"/keys/{key_id}/limits", data={"max_rpm": "300"}).status_code == 303
    assert client.post(f"/keys/{key_id}/limits", data={}).status_code == 303  # empty: the platform's again
    assert (key_row().max_rpm, key_row().max_tpm) == (None, None)


def test_console_sets_account_and_key_limits_with_a_reason(client, auth):
    auth.admin()
    user = make_user("bob@example.com")
    key_id = own_key(user)
    page = client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert "Rate limits" in page and "requests/min default" in page
    missing = client.post(f"/admin/users/{user.id}/limits", data={"rpm": "60"})
    assert missing.status_code == 422
    done = client.post(f"/admin/users/{user.id}/limits", data={"rpm": "60", "concurrency": "2", "reason": "abuse"})
    assert done.status_code == 303
    db.session.rollback()
    account = db.session.scalar(select(Account).where(Account.user_id == user.id))
    assert (account.rpm_limit, account.tpm_limit, account.concurrency_limit) == (60, None, 2)
    assert client.post(f"/admin/users/{user.id}/limits", data={"target": str(key_id), "tpm": "0",
                                                               "reason": "batch job"}).status_code == 303
    assert key_row().tpm_limit == 0
    bad = client.post(f"/admin/users/{user.id}/limits", data={"rpm": "fast", "reason": "x"})
    assert bad.status_code == 422 and "not a whole number" in bad.get_data(as_text=True)
    entries = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "limits.set")).all()
    assert [(e.target_type, e.reason) for e in entries] == [("account", "abuse"), ("api_key", "batch job")]
    assert "requests/min 60" in client.get(f"/admin/users/{user.id}").get_data(as_text=True)
