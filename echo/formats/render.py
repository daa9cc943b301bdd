"""Render: bodies and documents -> escaped, highlighted HTML (pygments) and terminal text.

Pygments' HtmlFormatter escapes every token, so request data reaches a page
only through it or through autoescaped templates.
"""

from __future__ import annotations

import functools
import json
import re

from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter, TerminalFormatter
from pygments.lexer import Lexer
from pygments.lexers import JsonLexer, TextLexer, get_lexer_for_mimetype
from pygments.util import ClassNotFound

from ..model.http import is_json_type

# Highlighting is linear but slow (about 1 MB/s); past this a body is shown as
# plain escaped text so one large upload cannot stall the page.
HIGHLIGHT_MAX_CHARS = 256 * 1024

_FORMATTER = HtmlFormatter(cssclass="hl", nowrap=False)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _mimetype(content_type: str | None) -> str:
    # A plain split, not a parser: a page must render whatever was recorded.
    return (content_type or "").split(";")[0].strip().lower()


def _lexer_for(content_type: str | None) -> Lexer:
    # Typed variables: pygments' stubs type its lexer classes' instances as Any.
    mimetype = _mimetype(content_type)
    lexer: Lexer
    if is_json_type(mimetype):
        lexer = JsonLexer()
    elif mimetype == "application/x-www-form-urlencoded" or not mimetype:
        lexer = TextLexer()
    else:
        try:
            lexer = get_lexer_for_mimetype("application/xml" if mimetype.endswith("+xml") else mimetype)
        except ClassNotFound:
            lexer = TextLexer()
    return lexer


def pretty_text(text: str, content_type: str | None) -> str:
    """JSON bodies are re-indented for reading; everything else is left as sent."""
    if is_json_type(_mimetype(content_type)):
        try:
            pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError):
            return text
        # A "\ud800" escape parses to a lone surrogate, which no page can encode;
        # it can only sit inside a JSON string, so write it back as the escape it was.
        return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", pretty)
    return text


def highlight_html(text: str, content_type: str | None) -> Markup:
    """Highlighted, escaped HTML for a body or document."""
    if len(text) > HIGHLIGHT_MAX_CHARS:
        return Markup('<pre class="plain">') + escape(text) + Markup("</pre>")
    return Markup(highlight(text, _lexer_for(content_type), _FORMATTER))


def highlight_terminal(text: str, content_type: str | None) -> str:
    if len(text) > HIGHLIGHT_MAX_CHARS:
        return text
    return str(highlight(text, _lexer_for(content_type), TerminalFormatter()))


# Token colours for each colour scheme, from pygments' own styles: the page
# follows the reader's system setting, and both read well on its backgrounds.
LIGHT_STYLE = "default"
DARK_STYLE = "github-dark"


@functools.lru_cache(maxsize=1)
def pygments_css() -> str:
    """Light and dark token colours, each under its own prefers-color-scheme query.

    Each style's rules apply only in its scheme: a class the dark style leaves
    undefined must not keep the light style's colour on a dark background.
    """
    # get_style_defs is untyped in pygments' stubs.
    light = HtmlFormatter(style=LIGHT_STYLE).get_style_defs(".hl")  # type: ignore[no-untyped-call]
    dark = HtmlFormatter(style=DARK_STYLE).get_style_defs(".hl")  # type: ignore[no-untyped-call]
    return (
        f"@media (prefers-color-scheme: light) {{\n{light}\n}}\n"
        f"@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"
    )
