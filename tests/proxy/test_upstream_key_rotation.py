"""Upstream key rotation: a key rotated by another process costs no failed call on this one.

The serving app caches its models (and their upstream's credential) for MODEL_CACHE_SECONDS;
the rotation runs in a second app on the same database, as `flask upstreams update --api-key`
on another machine would, so the serving app's cache is stale when its next call goes out.
"""
import pytest

from portal import create_app
from portal.extensions import db
from proxy.admission import ModelCache
from tests.fake_upstream import OPENAI_KEY
from tests.proxy.conftest import wait_for_records
from tests.proxy.test_failover import call

NEW_KEY = "sk-proj-Rt6YcW2qLn8ZxK4vBm9JdH3f"


@pytest.fixture
def stale_cache(app, gateway):
    """The serving app keeps its models for an hour, and (like another process) is not told of the
    operator's change: only the fix can make it see a new key."""
    app.extensions["tollgate.gateway"].models = ModelCache(3600)  # not registered with catalog.on_change
    return app


@pytest.fixture
def operator(app, tmp_path):
    """A second app on the serving app's database: the operator's command on another process."""
    other = create_app({"TESTING": True, "SECRET_KEY": app.config["SECRET_KEY"], "PUBLIC_URL": "http://localhost",
                        "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
                        "INSTANCE_PATH": str(tmp_path / "operator"), "REDIS_PREFIX": app.config["REDIS_PREFIX"]})
    yield other
    other.extensions["tollgate.gateway"].close()
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def rotate(operator, key):
    with operator.app_context():
        result = operator.test_cli_runner().invoke(args=["upstreams", "update", "fake-openai", "--api-key", key,
                                                         "--reason", "rotating a leaked key"])
        assert result.exit_code == 0, result.output


def sent_keys(fake):
    return [r.headers["authorization"].removeprefix("Bearer ") for r in fake.received]


def test_a_rotated_key_is_picked_up_without_a_failed_call(gateway, stale_cache, operator, fake, key):
    fake.valid_keys = {OPENAI_KEY}
    assert call(gateway, key).status_code == 200  # the model, with the old key, is cached now
    rotate(operator, NEW_KEY)
    fake.valid_keys = {NEW_KEY}  # the provider revoked the old key
    response = call(gateway, key)
    assert response.status_code == 200, response.text
    assert sent_keys(fake) == [OPENAI_KEY, OPENAI_KEY, NEW_KEY]
    [_, record] = wait_for_records(2)
    assert [a["result"] for a in record.attempts] == ["auth_retry", "ok"] and record.status == "ok"
    assert call(gateway, key).status_code == 200
    assert sent_keys(fake)[-1] == NEW_KEY and len(fake.received) == 4  # the cache has the new key now


def test_an_unchanged_key_that_is_refused_is_not_retried(gateway, stale_cache, fake, key):
    fake.valid_keys = {"sk-some-other-key-entirely"}
    response = call(gateway, key)
    assert response.status_code == 502 and "credentials" in response.json()["error"]["message"]
    assert len(fake.received) == 1
    [record] = wait_for_records(1)
    assert [a["result"] for a in record.attempts] == ["status_401"] and record.cost == 0
