"""Operator-written Markdown (legal documents, incidents) made safe for public pages.

Raw HTML in it is escaped, not trusted, and links or images with a scripting scheme
(`javascript:`, `data:`, however encoded) lead nowhere. The CSP would block them too; this keeps
a slip in the operator's text from depending on it.
"""
import html
import re

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor
from markupsafe import Markup

_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")
SAFE_SCHEMES = ("http", "https", "mailto")


def safe_url(url: str) -> bool:
    """A link or image address with no scheme (relative) or a harmless one; never javascript: or data:."""
    # As a browser reads it: character references decoded, then blanks and controls ignored.
    squeezed = re.sub(r"[\x00-\x20\x7f]", "", html.unescape(url)).lower()
    match = _SCHEME.match(squeezed)
    return match is None or match.group(1) in SAFE_SCHEMES


class _SafeLinks(Treeprocessor):
    def run(self, root):
        for element in root.iter():
            for attribute in ("href", "src"):
                value = element.get(attribute)
                if value is not None and not safe_url(value):
                    element.set(attribute, "#")


class _SafeLinksExtension(Extension):
    def extendMarkdown(self, md):
        md.treeprocessors.register(_SafeLinks(md), "tollgate_safe_links", 0)


def render(text: str, *, tables: bool = False) -> Markup:
    """`text` (Markdown) as HTML with raw HTML escaped and unsafe links neutralised."""
    extensions = ["sane_lists", _SafeLinksExtension()] + (["tables"] if tables else [])
    return Markup(markdown.markdown((text or "").replace("<", "&lt;"), extensions=extensions))
