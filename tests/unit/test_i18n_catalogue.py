"""The Chinese catalogue covers every string, and no template shows text outside gettext.

Two checks, one per source file so a failure names the file:
- every message `pybabel extract` would find (templates, mail, Python under portal/ and proxy/)
  has a Chinese translation whose placeholders are the same as the English ones;
- no template has visible text, or a text attribute (title, alt, placeholder, aria-label, a
  button's value), outside `_()` / `{% trans %}`. Text inside <code>, <pre>, <kbd>, <samp>,
  <script>, <style> or an element marked `translate="no"` (brand and product names) is exempt.
"""
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from jinja2 import Environment

from portal.i18n import LANGUAGES, TRANSLATIONS, read_catalogue

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted(p for p in (ROOT / "templates").rglob("*") if p.suffix in (".html", ".txt"))
PYTHON = sorted(p for d in ("portal", "proxy") for p in (ROOT / d).rglob("*.py"))
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None,
            "pgettext": ((1, "c"), 2), "npgettext": ((1, "c"), 2, 3), "lazy_ngettext": (1, 2)}
OTHER_LANGUAGES = [lang for lang in LANGUAGES if lang != "en"]
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w*)\}")


def _catalogue(lang):
    return read_catalogue(sorted((TRANSLATIONS / lang / "LC_MESSAGES").glob("*.po")), lang)


_CATALOGUES = {lang: _catalogue(lang) for lang in OTHER_LANGUAGES}


def _messages(path: Path):
    method = "python" if path.suffix == ".py" else "jinja2"
    options = {"extensions": "jinja2.ext.i18n", "trimmed": "true"} if method == "jinja2" else {}
    for lineno, message, _comments, context in extract_from_file(method, str(path), keywords=KEYWORDS,
                                                                  options=options):
        # A plural is one catalogue entry, keyed by its singular (its plural form is in the entry);
        # a message with a context (pgettext) is its own entry, keyed by the message and its context.
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            yield lineno, msgid, message, context


def _placeholders(text: str) -> set:
    return {m.group(0) for m in _PLACEHOLDER.finditer(text)}


def _rel(path):
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("lang", OTHER_LANGUAGES)
@pytest.mark.parametrize("path", TEMPLATES + PYTHON, ids=_rel)
def test_every_message_is_translated(path, lang):
    catalogue = _CATALOGUES[lang]
    missing, mismatched = [], []
    for lineno, msgid, message, context in _messages(path):
        entry = catalogue.get(msgid, context=context)
        strings = entry.string if entry is not None and isinstance(entry.string, tuple) else (
            (entry.string,) if entry is not None else ())
        if not any(strings) or (isinstance(message, tuple) and not isinstance(entry.id, tuple)):
            missing.append(f"line {lineno}: {msgid!r}" + (" (as a plural)" if isinstance(message, tuple) else "")
                           + (f" (context {context!r})" if context else ""))
            continue
        # Chinese has one plural form: its translation may drop a count the English plural names.
        expected = set().union(*(_placeholders(m) for m in message)) if isinstance(message, tuple) \
            else _placeholders(msgid)
        for translated in strings:
            if not _placeholders(translated) <= expected or (
                    not isinstance(message, tuple) and _placeholders(translated) != expected):
                mismatched.append(f"line {lineno}: {msgid!r} -> {translated!r}")
    assert not missing, f"{_rel(path)}: not in the {lang} catalogue:\n" + "\n".join(missing)
    assert not mismatched, f"{_rel(path)}: placeholders differ:\n" + "\n".join(mismatched)


# --- templates: no text outside gettext ----------------------------------------------------------

_TEXT_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "aria-description", "data-copied"}
_EXEMPT_ELEMENTS = {"code", "pre", "kbd", "samp", "script", "style", "svg"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_HOLE = "\x00"  # where a {{ expression }} or {% tag %} was: never text of its own
_LETTERS = re.compile(r"[A-Za-z]{2,}")


class _TextFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, exempt)
        self.found: list[str] = []

    def _exempt(self):
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        exempt = self._exempt() or tag in _EXEMPT_ELEMENTS or attrs.get("translate") == "no"
        if not exempt:
            for name, value in attrs.items():
                text_attribute = name in _TEXT_ATTRIBUTES or (
                    name == "value" and tag == "input" and attrs.get("type") in ("submit", "button", "reset"))
                if text_attribute and value and _LETTERS.search(value.replace(_HOLE, " ")):
                    self.found.append(f"<{tag} {name}={value.replace(_HOLE, '{{…}}')!r}>")
        if tag not in _VOID:
            self.stack.append((tag, exempt))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                del self.stack[index:]
                break

    def handle_data(self, data):
        if not self._exempt() and _LETTERS.search(data.replace(_HOLE, " ")):
            self.found.append(" ".join(data.replace(_HOLE, "{{…}}").split()))


def _outside_gettext(source: str) -> str:
    """The template with every Jinja tag, expression and trans block replaced by a hole."""
    env = Environment(extensions=["jinja2.ext.i18n"])
    pieces, depth, inside_tag = [], 0, None
    for _lineno, kind, value in env.lex(source):
        if kind in ("block_begin", "variable_begin"):
            inside_tag = []
            continue
        if inside_tag is not None:
            if kind in ("block_end", "variable_end"):
                words = [v for k, v in inside_tag if k == "name"]
                if words[:1] == ["trans"]:
                    depth += 1
                elif words[:1] == ["endtrans"]:
                    depth -= 1
                pieces.append(_HOLE)
                inside_tag = None
            else:
                inside_tag.append((kind, value))
            continue
        if kind == "data" and depth == 0:
            pieces.append(value)
        elif kind == "data":
            pieces.append(_HOLE)
    return "".join(pieces)


@pytest.mark.parametrize("path", TEMPLATES, ids=_rel)
def test_no_text_outside_gettext(path):
    source = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S)
    bare = _outside_gettext(source)
    if path.suffix == ".txt":
        found = [line.strip() for line in bare.split("\n") if _LETTERS.search(line.replace(_HOLE, " "))]
    else:
        finder = _TextFinder()
        finder.feed(bare)
        finder.close()
        found = finder.found
    assert not found, f"{_rel(path)}: text outside gettext:\n" + "\n".join(found)


def test_the_lint_sees_bare_text_and_lets_gettext_through():
    """The checks above must be able to fail."""
    finder = _TextFinder()
    finder.feed(_outside_gettext('<p>Hello <b>{{ name }}</b></p><a title="Open it" href="{{ u }}">{{ _("x") }}</a>'
                                 '<code>curl</code><span translate="no">Tollgate</span>'
                                 '{% trans %}Fine words{% endtrans %}<input type="submit" value="Save">'))
    assert finder.found == ["Hello", "<a title='Open it'>", "<input value='Save'>"]
    assert _placeholders("%(amount)s on {day}") == {"%(amount)s", "{day}"}


@pytest.mark.parametrize("lang", OTHER_LANGUAGES)
def test_no_message_is_translated_two_ways(lang):
    """The catalogue is several files merged; one English message must read the same everywhere.

    A word with two meanings ("paid" for a top-up and for a refund) has a context (pgettext), and so
    is two messages: each of them must still read the same in every file.
    """
    seen, clashes = {}, []
    for path in sorted((TRANSLATIONS / lang / "LC_MESSAGES").glob("*.po")):
        for key, translated in _entries(path, lang):
            if key in seen and seen[key][1] != translated:
                clashes.append(f"{key!r}: {seen[key][0]} {seen[key][1]!r} vs {path.name} {translated!r}")
            seen.setdefault(key, (path.name, translated))
    assert not clashes, "\n".join(clashes)


def _entries(path, lang):
    from babel.messages.pofile import read_po
    with open(path, "rb") as handle:
        for message in read_po(handle, locale=lang):
            if message.id and message.string and not message.fuzzy:
                msgid = message.id[0] if isinstance(message.id, tuple) else message.id
                yield ((message.context, msgid) if message.context else msgid), message.string
