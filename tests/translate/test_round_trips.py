"""A conversation translated and back keeps its meaning (hypothesis): Messages -> chat -> Messages and
chat -> Messages -> chat keep roles, texts, tool names, ids and arguments; an Anthropic stream carried
to chat chunks and back keeps what it says, however its text and partial JSON were cut."""
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.translate import chat_over_messages, messages_over_chat
from tests.translate.streams import anthropic_said, check_anthropic, run

SETTINGS = settings(max_examples=60, deadline=None)

texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(str.strip)
names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,15}", fullmatch=True)
ids = st.from_regex(r"[A-Za-z0-9]{8,24}", fullmatch=True)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), texts,
                    st.floats(allow_nan=False, allow_infinity=False, width=32))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
                      max_leaves=8)
arguments = st.dictionaries(names, values, max_size=4)


# --- Messages -> chat -> Messages --------------------------------------------------------------------

@st.composite
def anthropic_conversations(draw):
    """Alternating turns: user text (and the results of the previous turn's calls), assistant text
    and/or tool calls; the last turn is the user's."""
    messages, pending = [], []
    for _ in range(draw(st.integers(0, 3))):
        results = [{"type": "tool_result", "tool_use_id": call_id, "content": draw(texts)} for call_id in pending]
        messages.append({"role": "user", "content": results + [{"type": "text", "text": draw(texts)}]})
        blocks = [{"type": "text", "text": draw(texts)}] if draw(st.booleans()) else []
        calls = draw(st.lists(st.tuples(ids, names, arguments), max_size=3, unique_by=lambda c: c[0]))
        blocks += [{"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": a} for i, n, a in calls]
        if not blocks:
            blocks = [{"type": "text", "text": draw(texts)}]
        messages.append({"role": "assistant", "content": blocks})
        pending = [f"toolu_{i}" for i, _, _ in calls]
    results = [{"type": "tool_result", "tool_use_id": call_id, "content": draw(texts)} for call_id in pending]
    messages.append({"role": "user", "content": results + [{"type": "text", "text": draw(texts)}]})
    system = draw(st.none() | texts)
    return {"model": "m", "max_tokens": 100, "messages": messages, **({"system": system} if system else {})}


def anthropic_meaning(document: dict) -> list:
    """What each turn says: (role, texts, tool calls (id, name, input), tool results (id, text)).
    Texts of a turn are compared joined, as chat holds one text per message."""
    meaning = []
    for message in document["messages"]:
        content = message["content"]
        content = [{"type": "text", "text": content}] if isinstance(content, str) else content
        meaning.append((message["role"], "".join(b["text"] for b in content if b["type"] == "text"),
                        [(b["id"], b["name"], b["input"]) for b in content if b["type"] == "tool_use"],
                        [(b["tool_use_id"], b["content"]) for b in content if b["type"] == "tool_result"]))
    return meaning


def system_text(document: dict) -> str:
    system = document.get("system") or ""
    return system if isinstance(system, str) else "\n".join(block["text"] for block in system)


@SETTINGS
@given(anthropic_conversations())
def test_messages_to_chat_and_back(conversation):
    chat = messages_over_chat.request(conversation, dialect="openai", max_output=100)
    back, json_tool = chat_over_messages.request(chat, max_output=100)
    assert json_tool is None
    assert anthropic_meaning(back) == anthropic_meaning(conversation)
    assert system_text(back) == system_text(conversation)


# --- chat -> Messages -> chat -------------------------------------------------------------------------

@st.composite
def chat_conversations(draw):
    """system?, then user / assistant (text and/or calls) / a tool message per call, alternating."""
    messages = [{"role": "system", "content": draw(texts)}] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 3))):
        messages.append({"role": "user", "content": draw(texts)})
        calls = draw(st.lists(st.tuples(ids, names, arguments), max_size=3, unique_by=lambda c: c[0]))
        text = draw(texts) if draw(st.booleans()) or not calls else None
        assistant = {"role": "assistant", "content": text}
        if calls:
            assistant["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                                        "function": {"name": n, "arguments": json.dumps(a)}} for i, n, a in calls]
        messages.append(assistant)
        messages += [{"role": "tool", "tool_call_id": f"call_{i}", "content": draw(texts)} for i, _, _ in calls]
    messages.append({"role": "user", "content": draw(texts)})
    return {"model": "m", "messages": messages}


def chat_meaning(document: dict) -> list:
    return [(m["role"], m.get("content"),
             [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in m.get("tool_calls", [])],
             m.get("tool_call_id")) for m in document["messages"]]


@SETTINGS
@given(chat_conversations())
def test_chat_to_messages_and_back(conversation):
    messages, _ = chat_over_messages.request(conversation, max_output=100)
    back = messages_over_chat.request(messages, dialect="deepseek", max_output=100)
    assert chat_meaning(back) == chat_meaning(conversation)


# --- an Anthropic stream -> chat chunks -> an Anthropic stream ----------------------------------------

def cut(draw, text: str) -> list[str]:
    """`text` in pieces at places the strategy picks (at least one piece)."""
    if not text:
        return [text]
    points = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=min(6, len(text)))))
    edges = [0] + [p for p in points if p < len(text)] + [len(text)]
    return [text[a:b] for a, b in zip(edges, edges[1:])]


@st.composite
def anthropic_streams(draw):
    """A message_start with usage, an optional thinking block, then text and tool_use blocks (never two
    text blocks in a row, which chat could not tell apart), deltas cut anywhere, and the end."""
    usage = {"input_tokens": draw(st.integers(0, 5000)), "cache_creation_input_tokens": draw(st.integers(0, 500)),
             "cache_read_input_tokens": draw(st.integers(0, 5000)), "output_tokens": 1}
    events = [("message_start", {"type": "message_start", "message": {
        "id": "msg_" + draw(ids), "type": "message", "role": "assistant", "model": "claude", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": usage}})]
    kinds = (["thinking"] if draw(st.booleans()) else []) + draw(st.lists(st.sampled_from(["text", "tool_use"]),
                                                                          max_size=4))
    kinds = [k for i, k in enumerate(kinds) if not (k == "text" and i and kinds[i - 1] == "text")]
    for index, kind in enumerate(kinds):
        def delta(body):
            return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": body})
        if kind == "tool_use":
            block = {"type": "tool_use", "id": "toolu_" + draw(ids), "name": draw(names), "input": {}}
            pieces = [delta({"type": "input_json_delta", "partial_json": p})
                      for p in cut(draw, json.dumps(draw(arguments), ensure_ascii=draw(st.booleans())))]
        elif kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
            pieces = [delta({"type": "thinking_delta", "thinking": p}) for p in cut(draw, draw(texts))]
            pieces.append(delta({"type": "signature_delta", "signature": "EqQB" + draw(ids)}))
        else:
            block = {"type": "text", "text": ""}
            pieces = [delta({"type": "text_delta", "text": p}) for p in cut(draw, draw(texts))]
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        events += pieces
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    stop = "tool_use" if kinds and kinds[-1] == "tool_use" else draw(st.sampled_from(["end_turn", "max_tokens"]))
    output = draw(st.integers(1, 5000))
    events += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                  "usage": {"output_tokens": output}}),
               ("message_stop", {"type": "message_stop"})]
    return events


@SETTINGS
@given(anthropic_streams(), st.booleans())
def test_anthropic_stream_to_chat_and_back(stream, wants_usage):
    chunks = run(chat_over_messages.Events(model="m", wants_usage=wants_usage), stream, named=False)
    back = run(messages_over_chat.Events(model="m", dialect="openai"), chunks, named=True)
    message = check_anthropic(back)
    said, original = anthropic_said(back), anthropic_said(stream)
    assert [(kind, *rest[:-1], json.loads(rest[-1])) if kind == "tool_use" else (kind, *rest) for kind, *rest in said] \
        == [(kind, *rest[:-1], json.loads(rest[-1])) if kind == "tool_use" else (kind, *rest) for kind, *rest in original]
    assert message.stop_reason == stream[-2][1]["delta"]["stop_reason"]
    start = stream[0][1]["message"]["usage"]
    if wants_usage:  # the cache reads and the output come back; chat's usage has no place for writes apart
        assert message.usage.cache_read_input_tokens == start["cache_read_input_tokens"]
        assert message.usage.input_tokens == start["input_tokens"] + start["cache_creation_input_tokens"]
        assert message.usage.output_tokens == stream[-2][1]["usage"]["output_tokens"]
    else:
        assert message.usage.output_tokens == 0
