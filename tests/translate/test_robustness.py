"""An upstream that answers oddly (a value of the wrong kind anywhere in an answer or a stream event)
gets a translation as far as it reads, or an ApiError: never another exception, which the
pipeline and the relay would not turn into an answer the client can read (hypothesis)."""
import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.errors import ApiError
from proxy.translate import chat_over_messages, messages_over_chat, responses_over_chat
from tests.translate.streams import document, sse

ODD = st.sampled_from([None, True, 0, -1, 2.5, "", "x", "[DONE]", [], {}, [1], {"a": 1}, [None], [{}],
                       {"type": None}, {"index": "0"}])

CHAT_STREAMS = [sse(name) for name in ("openai-chat-stream-text.sse", "openai-chat-stream-parallel-tools.sse",
                                       "deepseek-chat-stream-reasoning.sse")]
ANTHROPIC_STREAMS = [sse(name) for name in ("anthropic-stream-text.sse", "anthropic-stream-tool-use.sse",
                                            "anthropic-stream-thinking.sse")]
CHAT_ANSWERS = [document("openai-chat-completion-tool-calls.json"), document("deepseek-chat-completion-reasoning.json")]
ANTHROPIC_ANSWERS = [document("anthropic-message-tool-use.json"), document("anthropic-message-thinking.json")]


def paths(node, prefix=()):
    """Every place in a JSON document, its root excepted."""
    if prefix:
        yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from paths(child, prefix + (key,))


def replaced(node, path, value):
    node = copy.deepcopy(node)
    parent = node
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return node


@st.composite
def spoiled_streams(draw, streams):
    events = list(draw(st.sampled_from(streams)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(events) - 1))
        name, data = events[at]
        if isinstance(data, dict):
            events[at] = (name, replaced(data, draw(st.sampled_from(list(paths(data)))), draw(ODD)))
    return events


@st.composite
def spoiled_answers(draw, answers):
    answer = draw(st.sampled_from(answers))
    for _ in range(draw(st.integers(1, 3))):
        answer = replaced(answer, draw(st.sampled_from(list(paths(answer)))), draw(ODD))
    return answer


def survives(step) -> None:
    try:
        step()
    except ApiError:
        pass


def through(translation, events) -> None:
    for name, data in events:
        translation.feed(name, data)
    translation.feed(None, "[DONE]")
    translation.finish()


@settings(max_examples=150, deadline=None)
@given(spoiled_streams(CHAT_STREAMS))
def test_odd_chat_chunks(events):
    survives(lambda: through(messages_over_chat.Events(model="m", dialect="openai"), events))
    survives(lambda: through(responses_over_chat.Events(model="m", dialect="deepseek", custom={"get_weather"},
                                                        request_document={}), events))


@settings(max_examples=150, deadline=None)
@given(spoiled_streams(ANTHROPIC_STREAMS))
def test_odd_anthropic_events(events):
    survives(lambda: through(chat_over_messages.Events(model="m", wants_usage=True), events))
    survives(lambda: through(chat_over_messages.Events(model="m", wants_usage=False, json_tool="get_weather"), events))


@settings(max_examples=100, deadline=None)
@given(spoiled_answers(CHAT_ANSWERS))
def test_odd_chat_answers(answer):
    survives(lambda: messages_over_chat.response(answer, model="m", dialect="openai"))
    survives(lambda: responses_over_chat.response(answer, model="m", dialect="deepseek", custom={"get_weather"},
                                                  request_document={}))


@settings(max_examples=100, deadline=None)
@given(spoiled_answers(ANTHROPIC_ANSWERS))
def test_odd_anthropic_answers(answer):
    survives(lambda: chat_over_messages.response(answer, model="m"))
    survives(lambda: chat_over_messages.response(answer, model="m", json_tool="get_weather"))
