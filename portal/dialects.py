"""How each upstream reports usage: its dialect, set by the operator or guessed from its base URL."""
from typing import Optional
from urllib.parse import urlsplit

OPENAI_COMPATIBLE = ("openai", "deepseek", "dashscope", "moonshot", "xai", "openrouter", "generic-openai")
DIALECTS = ("anthropic", *OPENAI_COMPATIBLE)
# OpenAI-compatible providers without the Responses API: /v1/responses reaches them as chat
# completions (proxy/translate/). An upstream of another dialect is marked so by its chat_only flag.
CHAT_ONLY = ("deepseek", "moonshot", "dashscope", "xai")

# OpenAI-protocol hosts. Anthropic-protocol upstreams (Anthropic's own, and DeepSeek's, Moonshot's
# or DashScope's Anthropic-compatible endpoints) all report usage in Anthropic's shape.
_HOSTS = {"api.openai.com": "openai", "api.deepseek.com": "deepseek",
          "dashscope.aliyuncs.com": "dashscope", "dashscope-intl.aliyuncs.com": "dashscope",
          "api.moonshot.cn": "moonshot", "api.moonshot.ai": "moonshot", "api.x.ai": "xai",
          "openrouter.ai": "openrouter"}


def guess(protocol: str, base_url: Optional[str]) -> str:
    """The dialect of an upstream the operator did not name one for: by host, else by protocol."""
    if protocol in ("echo", "anthropic"):
        return protocol
    return _HOSTS.get((urlsplit(base_url or "").hostname or "").lower(), "generic-openai")
