"""The input ceiling a request body can account for (docs/billing.md, "Bounds"). Pure."""
import pytest

from proxy import holds
from proxy.holds import (CEILING_OVERHEAD_TOKENS as OVERHEAD, CEILING_SERVER_CONTENT_TOKENS as SERVER,
                         CEILING_TOKENS_PER_MEDIA as MEDIA, input_ceiling)
from proxy.protocols import CHAT, EMBEDDINGS, MESSAGES, RESPONSES


def test_text_is_bounded_by_its_bytes_and_the_overhead():
    assert input_ceiling(CHAT, {"messages": [{"role": "user", "content": "hi"}]}, 1234) == 1234 + OVERHEAD
    assert input_ceiling(EMBEDDINGS, {"input": ["a", "b"]}, 10) == 10 + OVERHEAD


@pytest.mark.parametrize("route, document, parts", [
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x"}},
                                                      {"type": "input_audio", "input_audio": {}},
                                                      {"type": "file", "file": {"file_id": "f"}}]}]}, 3),
    (MESSAGES, {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x"}},
        {"type": "document", "source": {"type": "url", "url": "https://x.pdf"}},
        {"type": "tool_result", "content": [{"type": "image", "source": {}}]}]}]}, 3),
    (RESPONSES, {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x"},
                                                        {"type": "input_file", "file_id": "f"}]}]}, 2),
])
def test_each_media_part_adds_its_allowance(route, document, parts):
    assert input_ceiling(route, document, 500) == 500 + OVERHEAD + parts * MEDIA


@pytest.mark.parametrize("route, document", [
    (RESPONSES, {"previous_response_id": "resp_1", "input": "go on"}),
    (RESPONSES, {"conversation": "conv_1", "input": "go on"}),
    (RESPONSES, {"prompt": {"id": "pmpt_1"}}),
    (RESPONSES, {"tools": [{"type": "web_search"}], "input": "news?"}),
    (RESPONSES, {"tools": [{"type": "file_search", "vector_store_ids": ["v"]}]}),
    (RESPONSES, {"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}),
    (RESPONSES, {"tools": [{"type": "mcp", "server_url": "https://x"}]}),
    (MESSAGES, {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
    (MESSAGES, {"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}),
    (MESSAGES, {"mcp_servers": [{"type": "url", "url": "https://x"}]}),
    (CHAT, {"web_search_options": {}}),
    (CHAT, {"search_parameters": {"mode": "auto"}}),  # xAI's Live Search adds its sources
])
def test_content_the_provider_adds_gets_the_wide_ceiling(route, document):
    assert input_ceiling(route, document, 300) == SERVER + 300


@pytest.mark.parametrize("route, document", [
    (MESSAGES, {"tools": [{"name": "get_weather", "input_schema": {"type": "object"}}]}),
    (MESSAGES, {"tools": [{"type": "bash_20250124", "name": "bash"}, {"type": "custom", "name": "x"}]}),
    (RESPONSES, {"tools": [{"type": "function", "name": "f", "parameters": {}}]}),
    (CHAT, {"tools": [{"type": "function", "function": {"name": "f"}}]}),
    (RESPONSES, {"previous_response_id": None, "input": "x"}),
    (CHAT, {"search_parameters": {"mode": "off"}}),
])
def test_tools_the_client_runs_do_not_widen_it(route, document):
    assert input_ceiling(route, document, 300) == 300 + OVERHEAD


def test_the_hold_covers_half_the_bytes():
    assert holds.hold_input_tokens(1001) == 501


@pytest.mark.parametrize("odd", [["image"], {"image": 1}, 3, None])
def test_a_type_that_is_not_a_string_is_no_media_and_no_error(odd):
    document = {"messages": [{"role": "user", "content": [{"type": odd, "image_url": {"url": "https://x/y.png"}}]}]}
    assert input_ceiling(CHAT, document, 100) == 100 + OVERHEAD
    assert holds.by_reference(CHAT, document) is None
