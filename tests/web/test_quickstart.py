"""The quickstart page: the base URL from PUBLIC_URL, the public model ids, copyable snippets with a
placeholder key (never a real one), the statuses the gateway answers with, and /v1/balance's fields."""
import re

from portal import apikeys, catalog
from portal.database import atomic
from portal.pricing import Price
from portal.views.pages import PLACEHOLDER_KEY
from tests.factories import make_user

SNIPPETS = ("snippet-curl", "snippet-curl-messages", "snippet-openai", "snippet-anthropic", "snippet-claude",
            "snippet-codex", "snippet-codex-env", "snippet-balance")


def _models():
    with atomic():
        catalog.add_upstream("openai", "openai", "https://api.openai.com/v1")
        catalog.add_upstream("anthropic", "anthropic", "https://api.anthropic.com")
        catalog.set_model("gpt-x", "openai", Price(input=1_000_000, output=2_000_000))
        catalog.set_model("claude-x", "anthropic", Price(input=3_000_000, output=15_000_000))
        catalog.set_model("retired", "openai", Price(input=1, output=1), enabled=False)


def snippet(html: str, element_id: str) -> str:
    match = re.search(rf'<pre tabindex="0"><code id="{element_id}">(.*?)</code></pre>', html, re.S)
    assert match, f"no snippet {element_id}"
    return match.group(1)


def test_snippets_carry_the_base_url_models_and_a_placeholder_key(app, client):
    _models()
    response = client.get("/quickstart")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    root = app.config["PUBLIC_URL"]
    assert f'data-testid="base-url">{root}/v1<' in html
    for element_id in SNIPPETS:
        assert f'data-copy="{element_id}"' in html  # each has its copy button
        assert PLACEHOLDER_KEY in snippet(html, element_id) or element_id == "snippet-codex"  # env_key names it
    assert snippet(html, "snippet-curl").startswith(f"curl {root}/v1/chat/completions")
    assert '"model": "gpt-x"' in snippet(html, "snippet-curl")  # an OpenAI model on the OpenAI route
    assert f'OpenAI(base_url="{root}/v1"' in snippet(html, "snippet-openai")
    assert f'Anthropic(base_url="{root}"' in snippet(html, "snippet-anthropic")  # the SDK adds /v1
    claude = snippet(html, "snippet-claude")
    assert f"ANTHROPIC_BASE_URL={root}\n" in claude and f"ANTHROPIC_AUTH_TOKEN={PLACEHOLDER_KEY}" in claude
    assert "ANTHROPIC_MODEL=claude-x" in claude
    codex = snippet(html, "snippet-codex")
    assert "[model_providers.tollgate]" in codex and f'base_url = "{root}/v1"' in codex
    assert 'env_key = "TOLLGATE_API_KEY"' in codex and 'wire_api = "responses"' in codex
    assert 'model = "gpt-x"' in codex
    ids = re.search(r'data-testid="model-ids">(.*?)</ul>', html, re.S).group(1)
    assert re.findall(r"<code>([^<]+)</code>", ids) == ["claude-x", "gpt-x"]  # public models only


def test_a_logged_in_person_sees_no_real_key(client, auth):
    _models()
    user = auth.user()
    with atomic():
        _, plaintext = apikeys.issue(user, "laptop")
    html = client.get("/quickstart").get_data(as_text=True)
    assert plaintext not in html and plaintext[-4:] + '"' not in html
    assert set(re.findall(r"tg_[^\s<&\"']*", html)) == {PLACEHOLDER_KEY}  # every key on the page
    assert 'href="/keys/"' in html  # a link to create a key


def test_statuses_are_the_ones_the_gateway_answers_with(client):
    html = client.get("/quickstart").get_data(as_text=True)
    table = re.search(r'data-testid="error-statuses">(.*?)</table>', html, re.S).group(1)
    statuses = re.findall(r'<th scope="row"><code>(\d+)</code></th>', table)
    assert statuses == ["400", "401", "402", "403", "404", "405", "413", "422", "429", "500", "502", "503", "504"]
    assert "Insufficient balance" in table and "Retry-After" in table
    for field in ("balance_micro_usd", "held_micro_usd", "available_micro_usd", "currency", "credits_expire_at",
                  "credits_expired", "last_topup_at"):
        assert f"<code>{field}</code>" in html


def test_the_balance_fields_listed_are_the_ones_the_api_returns(client):
    user = make_user(credit=1_000_000)
    with atomic():
        _, plaintext = apikeys.issue(user, "k")
    fields = set(client.get("/v1/balance", headers={"Authorization": f"Bearer {plaintext}"}).get_json())
    html = client.get("/quickstart").get_data(as_text=True)
    listed = set(re.findall(r'<th scope="row"><code>([a-z_]+)</code></th>', html))
    assert fields and fields <= listed


def test_quickstart_in_chinese_keeps_the_code(app, client):
    _models()
    html = client.get("/quickstart", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).get_data(as_text=True)
    assert "<h1>快速上手</h1>" in html and "您需要准备" in html and "余额不足" in html
    assert snippet(html, "snippet-curl").startswith(f"curl {app.config['PUBLIC_URL']}/v1/chat/completions")
    assert ">复制</button>" in html
