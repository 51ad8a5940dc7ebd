from django import template

from workflow import markdown

register = template.Library()


@register.filter
def as_markdown(text: str):
    """Render finished model output as sanitised Markdown."""
    return markdown.render(text or "")


@register.filter
def seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f} s" if value < 60 else f"{int(value // 60)} min {int(value % 60)} s"
