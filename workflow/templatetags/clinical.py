from django import template

from workflow import markdown

register = template.Library()


@register.filter
def as_markdown(text: str):
    """Render finished model output as sanitised Markdown."""
    return markdown.render_finished(text or "")


@register.filter
def as_streaming_markdown(text: str):
    """Model output being written: its whole blocks rendered, the rest as written."""
    return markdown.streaming(text or "")


@register.filter
def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"
