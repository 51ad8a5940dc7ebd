"""Model output as HTML: Markdown rendered once a block is finished, then sanitised."""

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def render(text: str) -> SafeString:
    """Sanitised HTML of Markdown text; raw HTML in the text is escaped, links are inert."""
    html = nh3.clean(_markdown.render(text), link_rel="noopener noreferrer nofollow")
    return mark_safe(html)  # nh3 has just sanitised it
