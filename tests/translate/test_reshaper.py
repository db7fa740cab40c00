"""The bytes a client gets: upstream SSE events, parsed as the relay parses them, reshaped into the
client's stream (proxy.translate.Reshaper and encode)."""
from proxy.protocols import CHAT, MESSAGES, RESPONSES
from proxy.sse import Splitter, parse
from proxy.translate import Call, ChatOverMessages, MessagesOverChat, Reshaper, ResponsesOverChat, encode
from tests.translate.streams import DATA, check_anthropic, check_chat, check_responses, wire


def reshaped(translation, client_route: str, fixture: str) -> bytes:
    reshaper = Reshaper(translation.events(), client_route)
    splitter = Splitter()
    raw = (DATA / fixture).read_bytes().replace(b"\n\n", b"\n\n: keep-alive\n\n", 1)  # a comment mid-stream
    out = b"".join(reshaper.feed(parse(event)) for event in splitter.feed(raw))
    return out + reshaper.finish()


def test_anthropic_client_over_a_chat_upstream():
    translation = MessagesOverChat(Call("public", "openai", 1000))
    out = reshaped(translation, MESSAGES, "openai-chat-stream-parallel-tools.sse")
    assert out.startswith(b"event: message_start\ndata: {")
    assert out.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert len(check_anthropic(wire(out)).content) == 2


def test_chat_client_over_an_anthropic_upstream():
    translation = ChatOverMessages(Call("public", "anthropic", 1000, wants_usage=True))
    translation.request({"model": "claude", "messages": [{"role": "user", "content": "hi"}]})
    out = reshaped(translation, CHAT, "anthropic-stream-tool-use.sse")
    assert b"event:" not in out and out.endswith(b"data: [DONE]\n\n")
    assert check_chat(wire(out), wants_usage=True).choices[0].finish_reason == "tool_calls"


def test_responses_client_over_a_chat_upstream():
    translation = ResponsesOverChat(Call("public", "deepseek", 1000))
    translation.request({"model": "deepseek-reasoner", "input": "9.11 or 9.8?", "stream": True})
    out = reshaped(translation, RESPONSES, "deepseek-chat-stream-reasoning.sse")
    assert out.startswith(b"event: response.created\n")
    assert check_responses(wire(out)).output_text == "9.8 is greater."


def test_encoding_keeps_unicode_and_names_only_named_streams():
    events = [("message_start", {"text": "你好"}), (None, "[DONE]")]
    assert encode(events, named=True) == 'event: message_start\ndata: {"text":"你好"}\n\ndata: [DONE]\n\n'.encode()
    assert encode(events, named=False) == 'data: {"text":"你好"}\n\ndata: [DONE]\n\n'.encode()


def test_line_separators_inside_json_strings_survive_the_stream():
    """JSON carries U+2028, U+2029 and U+0085 unescaped; SSE lines end only at CR and LF."""
    said = "one\u2028two\u2029three\x85four"
    upstream = ('data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"' + said + '"}}]}\r\n\r\n'
                'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\n\r\n'
                'data: [DONE]\r\n\r\n').encode()
    reshaper = Reshaper(MessagesOverChat(Call("public", "openai", 1000)).events(), MESSAGES)
    out = b"".join(reshaper.feed(parse(event)) for event in Splitter().feed(upstream))
    assert check_anthropic(wire(out)).content[0].text == said
