"""Real Chromium (Debian's) driven by Playwright against the real server."""

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import installed

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

expect.set_options(timeout=20_000)


# Per module: Playwright's sync API keeps an event loop running in the test thread while
# it is open, and tests outside this folder need that thread free for asyncio.run().
@pytest.fixture(scope="module")
def browser():
    executable = installed("chromium", "chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


# Every page of every browser test reports what the Content-Security-Policy blocked.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolation(`${event.effectiveDirective} blocked ${event.blockedURI || "inline"}` +
    ` at ${event.sourceFile}:${event.lineNumber} on ${location.pathname}`);
});
"""


@pytest.fixture
def csp_violations() -> list[str]:
    return []


@pytest.fixture
def page(browser, server, csp_violations) -> Page:
    context = browser.new_context(base_url=server, viewport={"width": 1400, "height": 900})
    context.expose_function("cspViolation", lambda report: csp_violations.append(report))
    context.add_init_script(REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    yield page
    page.evaluate("1")  # a round trip: reports still on their way arrive first
    context.close()
    assert not csp_violations, f"The page broke its Content-Security-Policy: {csp_violations}"


def log_in(page: Page, username: str, password: str) -> None:
    page.goto("/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Your cases")).to_be_visible()


@pytest.fixture
def workspace(page, alice, case):
    log_in(page, "alice", "alice-password-1")
    page.goto(f"/cases/{case.pk}/")
    return page
