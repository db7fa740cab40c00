"""Removing the upstream credential from text an upstream sent back, before a client sees it.

Providers echo keys in error messages whole, cut ("sk-ab...wxyz"), quoted in JSON, or inside
URLs. Checking only a key's ends misses its middle, so every run of MIN_RUN or more characters
that also occurs in the credential (or in its URL, JSON or base64 spelling) is removed, wherever
it is and in any letter case.
"""
import base64
import json
import string
from urllib.parse import quote

MIN_RUN = 6
MARK = "[redacted]"
# Letter case is ignored for ASCII only: str.lower() can change a string's length ("İ"), and
# positions in the lowered message must stay positions in the message.
_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _spellings(secret: str) -> set[str]:
    """The secret as it may appear in text: as is, URL-encoded, JSON-escaped, base64 (any alignment)."""
    forms = {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}
    raw = secret.encode()
    for shift in range(3):  # a secret inside a longer base64 string starts at any of three alignments
        forms.add(base64.b64encode(b"\0" * shift + raw).decode()[4 if shift else 0:].rstrip("="))
    return {f.translate(_FOLD) for f in forms if f}


def redact(message: str, secret: str | None) -> str:
    """`message` with every run of MIN_RUN+ characters of `secret` replaced by "[redacted]".

    Adjacent or overlapping runs merge into one mark. A secret shorter than MIN_RUN is only
    removed where it appears whole.
    """
    if not secret or not message:
        return message
    run = min(MIN_RUN, len(secret))
    grams = {form[i:i + run] for form in _spellings(secret) for i in range(len(form) - run + 1)}
    lowered = message.translate(_FOLD)
    hidden = [False] * len(message)
    for i in range(len(message) - run + 1):
        if lowered[i:i + run] in grams:
            hidden[i:i + run] = [True] * run
    out, i = [], 0
    while i < len(message):
        if hidden[i]:
            out.append(MARK)
            while i < len(message) and hidden[i]:
                i += 1
        else:
            out.append(message[i])
            i += 1
    return "".join(out)
