"""Model output as HTML: Markdown rendered once a block is finished, then sanitised."""

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
# A link or an image would let a prompt-injected answer carry case data out in a URL (a
# click, or the browser's own fetch): links show their target as text, images go.
_TAGS = nh3.ALLOWED_TAGS - {"a", "img", "area", "map"}


def _link_open(renderer, tokens, idx, options, env) -> str:
    env.setdefault("links", []).append(tokens[idx])
    return ""


def _link_close(renderer, tokens, idx, options, env) -> str:
    opened = env["links"].pop()
    if opened.markup == "autolink":  # <https://…>: its text is the target already
        return ""
    return f" ({escapeHtml(str(opened.attrGet('href')))})"


_markdown.add_render_rule("link_open", _link_open)
_markdown.add_render_rule("link_close", _link_close)


def render(text: str) -> SafeString:
    """Sanitised HTML of Markdown text: raw HTML escaped, links inert text, no images."""
    return mark_safe(nh3.clean(_markdown.render(text), tags=_TAGS))  # nh3 has sanitised it
