"""redact(): no run of six or more characters of the upstream credential survives, however it is spelt."""
import base64
import json
from urllib.parse import quote

import pytest

from proxy.redact import MARK, redact

SECRET = "sk-proj-Zx81Qw/7mN+Lp0Rt=Yv5Ku2Hs9"


def leaks(text: str, secret: str = SECRET, run: int = 6) -> list[str]:
    """Every run of `run` characters of the secret still in the text (case-insensitively)."""
    lowered = text.lower()
    return [secret[i:i + run] for i in range(len(secret) - run + 1) if secret[i:i + run].lower() in lowered]


@pytest.mark.parametrize("message", [
    f"Incorrect API key provided: {SECRET}.",
    f"Incorrect API key provided: {SECRET[:8]}...{SECRET[-8:]}",                  # the ends, as before
    f"key fragment {SECRET[10:16]} in the middle",                                 # a middle run of exactly six
    f"{SECRET[:6]} starts the message",
    f"the message ends with {SECRET[-7:]}",
    f"{SECRET}{SECRET} twice, then {SECRET[3:20]} again",
    f"Shouting: {SECRET.upper()}",
    f"lower: {SECRET.lower()}",
    f"url: https://api.example/v1?key={quote(SECRET, safe='')}&x=1",
    f"json: {json.dumps({'key': SECRET})}",
    f"basic: {base64.b64encode(('user:' + SECRET).encode()).decode()}",
    f"base64: {base64.b64encode(SECRET.encode()).decode()}",
])
def test_no_run_of_six_survives(message):
    out = redact(message, SECRET)
    assert MARK in out
    assert leaks(out) == [], out


def test_text_around_the_secret_is_kept():
    assert redact(f"bad key {SECRET} for org-1", SECRET) == f"bad key {MARK} for org-1"
    assert redact(f"key ...{SECRET[5:15]}... here", SECRET) == f"key ...{MARK}... here"
    assert redact(f"{SECRET}{SECRET}", SECRET) == MARK  # adjacent runs merge into one mark


def test_runs_shorter_than_six_stay():
    message = f"model {SECRET[:5]} and {SECRET[-5:]}"
    assert redact(message, SECRET) == message


@pytest.mark.parametrize("secret", [None, ""])
def test_no_secret_changes_nothing(secret):
    assert redact("Rate limit exceeded", secret) == "Rate limit exceeded"


def test_a_short_secret_is_removed_where_it_appears_whole():
    assert redact("token abc1 and abc", "abc1") == f"token {MARK} and abc"


def test_non_ascii_text_keeps_its_positions():
    # str.lower() would make "İ" two characters and shift everything after it.
    assert redact(f"İİİ {SECRET} İ", SECRET) == f"İİİ {MARK} İ"


def test_an_empty_message_stays_empty():
    assert redact("", SECRET) == ""


@pytest.mark.parametrize("spelling", [
    quote(SECRET, safe=""),
    json.dumps(SECRET)[1:-1],
    base64.b64encode(SECRET.encode()).decode(),
    base64.b64encode(("u:" + SECRET).encode()).decode()[4:],
    base64.b64encode(("id:" + SECRET).encode()).decode()[4:],
])
def test_no_run_of_six_of_an_encoded_spelling_survives(spelling):
    out = redact(f"echoed back: {spelling}!", SECRET)
    assert leaks(out, spelling.rstrip("=")[:-2]) == [], out  # its last characters depend on what follows
