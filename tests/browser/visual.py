"""Screenshots compared with the baselines kept in `tests/browser/baselines/`.

A deliberate change of how a page looks updates its baselines in the same commit:
`UPDATE_BASELINES=1 make test` (or the one test) writes them, then look at them before
committing. Times, durations and failures' (random) reference ids are masked; the mouse
rests outside the page.
"""

import os
import re
import tempfile
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageChops
from playwright.sync_api import Page

BASELINES = Path(__file__).parent / "baselines"
# A pixel counts as changed when its brightness moved by more than this (of 255), which
# anti-aliasing never does; a page may change by this share of its pixels, less than a
# small button moving.
CHANGED_PIXEL = 24
TOLERANCE = 0.001
DYNAMIC = "time, .run-meta, .run-details"
REFERENCE = re.compile(r"Reference [0-9a-f]{8}")  # a failure's, new at each run


def changed_share(actual: Image.Image, baseline: Image.Image) -> float:
    """The share of pixels that differ visibly; 1 when the sizes differ."""
    if actual.size != baseline.size:
        return 1.0
    difference = ImageChops.difference(actual.convert("RGB"), baseline.convert("RGB"))
    histogram = difference.convert("L").histogram()
    return sum(histogram[CHANGED_PIXEL + 1 :]) / (actual.width * actual.height)


def assert_looks_as_before(page: Page, name: str) -> None:
    page.mouse.move(0, 0)
    png = page.screenshot(
        full_page=True,
        animations="disabled",
        caret="hide",
        mask=[page.locator(DYNAMIC), page.get_by_text(REFERENCE)],
    )
    actual = Image.open(BytesIO(png))
    baseline_path = BASELINES / f"{name}.png"
    if os.environ.get("UPDATE_BASELINES") or not baseline_path.exists():
        BASELINES.mkdir(exist_ok=True)
        actual.save(baseline_path, optimize=True)
        assert os.environ.get("UPDATE_BASELINES"), f"{name}: no baseline yet, one was written"
        return
    baseline = Image.open(baseline_path)
    share = changed_share(actual, baseline)
    if share > TOLERANCE:
        kept = Path(tempfile.mkdtemp(prefix="visual-"))
        actual.save(kept / f"{name}.png")
        if actual.size == baseline.size:
            ImageChops.difference(actual.convert("RGB"), baseline.convert("RGB")).save(
                kept / f"{name}-difference.png"
            )
        raise AssertionError(
            f"{name} looks different from its baseline ({share:.2%} of its pixels, "
            f"{actual.size} against {baseline.size}); the screenshot is in {kept}. "
            "If the change is meant, UPDATE_BASELINES=1 writes new baselines."
        )
