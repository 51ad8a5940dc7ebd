"""Model output as HTML: Markdown rendered once a block is finished, then sanitised."""

import functools
import re

import nh3
from django.utils.html import format_html
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


@functools.lru_cache(maxsize=64)
def render_finished(text: str) -> SafeString:
    """`render` of a finished text (a stage's reasoning or summary, a reply, as written or
    as a clinician edited it), kept by the text itself for the next page or event that
    shows it: a group's stream shows all its stages again at each one's end (measured: 56
    ms per event for six 1,400-word stages, 25 ms for a stage with three earlier runs).
    At most 64 texts: about 3 MB at a few thousand words each, 30 MB at 20,000."""
    return render(text)


# Only the blocks' boundaries are needed while text streams: no inline parsing.
_blocks = MarkdownIt("commonmark", {"html": False}).enable("table")
_blocks.core.ruler.disable("inline")
_LINE_START = re.compile(r"\r\n?|\n")
_ONE_LINE = {"heading_open", "hr"}


def finished_length(text: str) -> int:
    """How much of streamed text is whole blocks (paragraphs, lists, headings, tables…) that
    nothing written later can change: every block of its complete lines but the last,
    which may still grow (a list its next item, a paragraph a setext underline), unless
    that is a heading or a rule, which end with their line."""
    complete = text[: max(text.rfind("\n"), text.rfind("\r")) + 1]
    blocks = [t for t in _blocks.parse(complete) if t.level == 0 and t.map]
    if not blocks:
        return 0
    lines = [0] + [match.end() for match in _LINE_START.finditer(complete)]
    last = blocks[-1]
    return lines[last.map[1] if last.type in _ONE_LINE else last.map[0]]


# Past this, an unfinished block (an unclosed code fence, a 3,000-word paragraph) stays as
# written until the stage ends: reading it again at every line would cost its square.
LONGEST_UNFINISHED = 20_000


def advance(tail: str, text: str) -> tuple[str, str]:
    """The blocks `text` finished after `tail` (the unfinished text so far), and the new
    unfinished text. A block can only be finished by a line that begins after it."""
    tail += text
    if ("\n" not in text and "\r" not in text) or len(tail) > LONGEST_UNFINISHED:
        return "", tail
    done = finished_length(tail)
    return tail[:done], tail[done:]


def unfinished(text: str) -> str:
    return text[finished_length(text) :]


def streaming(text: str) -> SafeString:
    """Text being written: its whole blocks rendered, the rest escaped in a `<span>`."""
    done = finished_length(text)
    tail = format_html("<span>{}</span>", text[done:]) if text[done:] else ""
    return render(text[:done]) + tail if done else mark_safe(tail)  # both are escaped


def plain_text(text: str) -> str:
    """Markdown as plain text, for a record that shows no Markdown (an EHR's note field):
    headings and paragraphs as lines, lists with their markers, emphasis dropped, a link as
    its text and target, a table as rows of cells."""
    lines: list[str] = []
    lists: list[list[int]] = []  # the open lists: [next number], or [] for a bullet list
    line = ""
    for token in _markdown.parse(text):
        match token.type:
            case "bullet_list_open" | "ordered_list_open":
                start = int(token.attrGet("start") or 1)
                lists.append([start] if token.type == "ordered_list_open" else [])
            case "bullet_list_close" | "ordered_list_close":
                lists.pop()
                if not lists:
                    lines.append("")
            case "list_item_open":
                numbered = lists[-1]
                marker = f"{numbered[0]}. " if numbered else "- "
                if numbered:
                    numbered[0] += 1
                line = "  " * (len(lists) - 1) + marker
            case "inline":
                line += _inline_text(token.children or [])
            case "paragraph_close" | "heading_close" | "th_close" | "td_close":
                if token.type in ("th_close", "td_close"):
                    line += " | "
                    continue
                lines.append(line)
                line = ""
                if not lists:
                    lines.append("")
            case "tr_close":
                lines.append(line.removesuffix(" | "))
                line = ""
            case "table_close" | "blockquote_close":
                lines.append("")
            case "fence" | "code_block":
                lines.extend([*token.content.rstrip("\n").split("\n"), ""])
            case "hr":
                lines.extend(["———", ""])
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def inert(text: str) -> str:
    """Model Markdown for a file another program renders (a downloaded report): its plain
    text, with what could make a link, an image or raw HTML escaped, so that the file
    loads nothing the model chose and shows a link's target as text, as the page does."""
    return _ACTIVE.sub(r"\\\1", plain_text(text))


_ACTIVE = re.compile(r"([\[\]<>])")


def _inline_text(children) -> str:
    text, links = "", []
    for child in children:
        match child.type:
            case "text" | "code_inline" | "html_inline":
                text += child.content
            case "softbreak" | "hardbreak":
                text += "\n"
            case "link_open":
                links.append(child)
            case "link_close":
                opened = links.pop()
                if opened.markup != "autolink":
                    text += f" ({opened.attrGet('href')})"
    return text
