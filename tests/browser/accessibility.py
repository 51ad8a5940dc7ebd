"""axe-core (from npm, `make test` installs it) run on a page as a clinician has it."""

from pathlib import Path

import pytest
from playwright.sync_api import Page

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def violations(page: Page) -> list[str]:
    """What axe-core finds against WCAG 2.2 AA on the page as it is now, one line each."""
    if not AXE.exists():
        pytest.skip("axe-core is not installed (npm ci)")
    if not page.evaluate("() => 'axe' in window"):
        page.evaluate(AXE.read_text())  # as a script the page's CSP would refuse it
    return page.evaluate(REPORT, WCAG_22_AA)


REPORT = """async (tags) => {
  const {violations} = await axe.run(document, {runOnly: {type: "tag", values: tags}});
  return violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(", ")})`);
}"""
