"""API error messages follow the request's Accept-Language (English or Simplified Chinese); the
machine-readable `type` and `code` never change. The SDKs send no Accept-Language: English."""
import anthropic
import openai
import pytest
import requests

BAD_KEY = "tg_" + "x" * 40
ZH = {"Accept-Language": "zh-CN"}


def test_openai_sdk_gets_a_chinese_message_in_the_openai_shape(gateway):
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key=BAD_KEY, max_retries=0, timeout=20,
                       default_headers=ZH) as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "hi"}])
    error = refused.value.body
    assert error["message"] == "无效的 API 密钥。请检查密钥，或在控制台创建新密钥。"
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_api_key", None)


def test_anthropic_sdk_gets_a_chinese_message_in_the_anthropic_shape(gateway):
    with anthropic.Anthropic(base_url=gateway, api_key=BAD_KEY, max_retries=0, timeout=20,
                             default_headers=ZH) as client:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            client.messages.create(model="echo-1", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    body = refused.value.body
    assert body == {"type": "error", "error": {"type": "authentication_error",
                                               "message": "无效的 API 密钥。请检查密钥，或在控制台创建新密钥。"}}


def test_without_the_header_the_sdks_get_english(gateway):
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key=BAD_KEY, max_retries=0, timeout=20) as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            client.chat.completions.create(model="echo-1", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["message"] == "Unknown API key. Check the key, or create a new one in the portal."
    with anthropic.Anthropic(base_url=gateway, api_key=BAD_KEY, max_retries=0, timeout=20) as client:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            client.messages.create(model="echo-1", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["error"]["message"] == \
        "Unknown API key. Check the key, or create a new one in the portal."


@pytest.mark.parametrize("headers, message", [
    ({"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}, "请求体不是合法的 JSON。"),
    ({"Accept-Language": "en-US,en;q=0.9"}, "The request body is not valid JSON."),
    ({"Accept-Language": "fr-FR"}, "The request body is not valid JSON."),
])
def test_a_message_with_its_language_and_the_same_code(gateway, key, headers, message):
    """A refusal of the body follows the header too; a language the gateway does not speak is English."""
    response = requests.post(f"{gateway}/v1/chat/completions", data=b"{not json", timeout=20,
                             headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                                      **headers})
    error = response.json()["error"]
    assert response.status_code == 400 and error["message"] == message
    assert (error["type"], error["code"]) == ("invalid_request_error", None)


def test_a_message_with_values_keeps_them(gateway):
    response = requests.get(f"{gateway}/v1/nowhere", headers=ZH, timeout=20)
    error = response.json()["error"]
    assert response.status_code == 404 and error["code"] == "unknown_route"
    assert error["message"] == "未知的 API 路径 /v1/nowhere。本网关支持的路径请参阅 README。"
