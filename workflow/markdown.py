"""Model output as HTML: Markdown rendered once a block is finished, then sanitised."""

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
# An image would make the browser fetch a URL the model chose, and tell it the page's case.
_TAGS = nh3.ALLOWED_TAGS - {"img", "area", "map"}


def render(text: str) -> SafeString:
    """Sanitised HTML of Markdown text: raw HTML escaped, links inert, no images."""
    html = nh3.clean(_markdown.render(text), tags=_TAGS, link_rel="noopener noreferrer nofollow")
    return mark_safe(html)  # nh3 has just sanitised it
