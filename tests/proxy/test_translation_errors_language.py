"""Refusals of the protocol translation (proxy/translate/) follow Accept-Language like every API error:
a Chinese reader gets a whole Chinese sentence, the pieces a refusal is built from included (what a
field must be, what it was), in the client's own error shape; `type` and `code` stay as in English."""
import re

import pytest
import requests

from portal import catalog
from portal.database import atomic
from tests.fake_upstream import OPENAI_KEY
from tests.proxy.conftest import GPT
from tests.web.test_no_english_left import english

HI = [{"role": "user", "content": "你好"}]
# (route, body, the Chinese message, the field names it keeps as the client sends them)
REFUSALS = [
    ("/v1/messages", {"model": "gpt-test", "max_tokens": 50, "messages": {"role": "user", "content": "你好"}},
     "messages 必须是列表，收到的是对象。", {"messages"}),
    ("/v1/responses", {"model": "chatonly-test", "input": "你好", "store": True},
     "此模型的 store 必须为 false：其上游使用对话补全接口，网关不保存可供后续引用的响应。"
     "请每次发送完整对话，并设置 store: false。", {"store"}),
    ("/v1/chat/completions", {"model": "claude-test", "messages": HI, "n": 2},
     "此模型的 n 必须为 1：其上游每次调用只生成一个结果。", set()),
    ("/v1/messages", {"model": "gpt-test", "max_tokens": 50, "messages": HI,
                      "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     'tools[0]："web_search_20250305" 是在 Anthropic 服务器上运行的工具，此模型的上游无法运行它。'
     "请去掉该工具，或改用由 Anthropic 提供的模型。", {"tools"}),
]


@pytest.fixture
def chat_only(app, catalog_ready, fake):
    """chatonly-test: an OpenAI-style upstream the operator marked as speaking chat completions only."""
    with atomic():
        catalog.add_upstream("fake-chat-only", "openai", fake.url + "/v1", OPENAI_KEY, chat_only=True,
                             allow_private_host=True)
        catalog.set_model("chatonly-test", "fake-chat-only", GPT, upstream_model="plain-chat", max_output_tokens=4096)


@pytest.mark.one_backend  # the words of a refusal, which no database changes
def test_translation_refusals_read_in_chinese_in_each_error_shape(gateway, key, fake, chat_only):
    def call(path, body, language):
        return requests.post(f"{gateway}{path}", json=body, timeout=20,
                             headers={"Authorization": f"Bearer {key}", "Accept-Language": language})

    for path, body, message, fields in REFUSALS:
        chinese, english_answer = call(path, body, "zh-CN,zh;q=0.9"), call(path, body, "en-US")
        assert (chinese.status_code, english_answer.status_code) == (400, 400), (path, chinese.text)
        if path == "/v1/messages":
            assert chinese.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
            assert english_answer.json()["error"]["type"] == "invalid_request_error"
            english_message = english_answer.json()["error"]["message"]
        else:
            error = chinese.json()["error"]
            assert error == {"message": message, "type": "invalid_request_error", "param": None,
                             "code": "unsupported_by_upstream"}, path
            assert english_answer.json()["error"] | {"message": message} == error
            english_message = english_answer.json()["error"]["message"]
        assert not english(message, fields), message
        assert not re.search(r"[\u4e00-\u9fff]", english_message), english_message
    assert fake.received == []  # refused before anything was held or sent
