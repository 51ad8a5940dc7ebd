"""Bar charts as SVG, drawn on the server (no JS chart library): each bar a count or a
rate, labelled, with its value in the bar's title for a pointer and a screen reader."""

from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT, TOP, BOTTOM, LEFT = 640, 180, 16, 36, 8


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    shown: str  # the value as a reader should read it, e.g. "12" or "4 %"


def bars(
    title: str,
    data: list[Bar],
    *,
    width: int = WIDTH,
    label_every: int = 1,
    scale: float | None = None,
) -> SafeString:
    """A bar chart of `data`, left to right, `width` units wide (its text stays the size of
    a narrower chart's on a wider figure); every `label_every`th label is drawn. Bars are
    drawn against `scale` (e.g. 1 for shares), else against the tallest."""
    top = scale or max((bar.value for bar in data), default=0) or 1
    step = (width - LEFT) / max(len(data), 1)
    usable = HEIGHT - TOP - BOTTOM
    parts = []
    for n, bar in enumerate(data):
        height = usable * bar.value / top
        x, y = LEFT + n * step, TOP + usable - height
        parts.append(
            format_html(
                '<g><title>{}: {}</title><rect class="bar" x="{}" y="{}" width="{}"'
                ' height="{}"></rect>{}</g>',
                bar.label,
                bar.shown,
                _at(x + 2),
                _at(y),
                _at(step - 4),
                _at(height),
                format_html(
                    '<text class="value" x="{}" y="{}">{}</text>',
                    _at(x + step / 2),
                    _at(y - 3),
                    bar.shown,
                )
                if bar.value
                else "",
            )
        )
    labels = format_html_join(
        "",
        '<text class="label" x="{}" y="{}">{}</text>',
        (
            (_at(LEFT + n * step + step / 2), HEIGHT - BOTTOM + 16, bar.label)
            for n, bar in enumerate(data)
            if n % label_every == 0
        ),
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}">'
        '<title>{}</title><line class="axis" x1="{}" y1="{}" x2="{}" y2="{}"></line>{}{}</svg>',
        width,
        HEIGHT,
        title,
        title,
        LEFT,
        HEIGHT - BOTTOM,
        width,
        HEIGHT - BOTTOM,
        SafeString("".join(parts)),
        labels,
    )


def _at(coordinate: float) -> str:
    return f"{coordinate:.1f}"
