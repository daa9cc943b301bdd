"""Render: bodies and documents -> escaped, highlighted HTML (pygments) and terminal text.

Pygments' HtmlFormatter escapes every token, so request data reaches a page
only through it or through autoescaped templates.
"""

from __future__ import annotations

import functools
import json

from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter, TerminalFormatter
from pygments.lexer import Lexer
from pygments.lexers import JsonLexer, TextLexer, get_lexer_for_mimetype
from pygments.util import ClassNotFound

# Highlighting is linear but slow (about 1 MB/s); past this a body is shown as
# plain escaped text so one large upload cannot stall the page.
HIGHLIGHT_MAX_CHARS = 256 * 1024

_FORMATTER = HtmlFormatter(cssclass="hl", nowrap=False)


def _lexer_for(content_type: str | None) -> Lexer:
    mimetype = (content_type or "").split(";")[0].strip().lower()
    if mimetype == "application/json" or mimetype.endswith("+json"):
        return JsonLexer()
    if mimetype == "application/x-www-form-urlencoded":
        return TextLexer()
    if mimetype.endswith("+xml"):
        mimetype = "application/xml"
    try:
        return get_lexer_for_mimetype(mimetype) if mimetype else TextLexer()
    except ClassNotFound:
        return TextLexer()


def pretty_text(text: str, content_type: str | None) -> str:
    """JSON bodies are re-indented for reading; everything else is left as sent."""
    mimetype = (content_type or "").split(";")[0].strip().lower()
    if mimetype == "application/json" or mimetype.endswith("+json"):
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            return text
    return text


def highlight_html(text: str, content_type: str | None) -> Markup:
    """Highlighted, escaped HTML for a body or document."""
    if len(text) > HIGHLIGHT_MAX_CHARS:
        return Markup('<pre class="plain">') + escape(text) + Markup("</pre>")
    return Markup(highlight(text, _lexer_for(content_type), _FORMATTER))


def highlight_terminal(text: str, content_type: str | None) -> str:
    if len(text) > HIGHLIGHT_MAX_CHARS:
        return text
    return highlight(text, _lexer_for(content_type), TerminalFormatter())


@functools.lru_cache(maxsize=1)
def pygments_css() -> str:
    """Light and dark token colours, from pygments' own styles."""
    light = HtmlFormatter(style="default").get_style_defs(".hl")
    dark = HtmlFormatter(style="monokai").get_style_defs(".hl")
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"
