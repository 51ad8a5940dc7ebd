"""Safe by default, as a clinician and an operator see it in Chromium: the page keeps to its
Content-Security-Policy in every state, links the model writes go nowhere, and repeated
password guesses are refused with a message.

Every browser test's page reports what the policy blocked (`csp_violations`, conftest) and
fails on any; this module walks the states the others do not reach.
"""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from workflow.models import StageRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _step(page, key):
    return page.locator(f"li[data-stage-key={key}]")


def test_every_page_state_keeps_to_the_content_security_policy(
    page, alice, case, simulator, django_user_model, csp_violations, tmp_path
):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("enter a correct username and password")
    log_in(page, "alice", "alice-password-1")

    page.get_by_role("link", name="New case").first.click()
    page.get_by_role("button", name="Create case").click()  # nothing filled in: form errors
    expect(page.get_by_text("This field is required.")).to_be_visible()

    page.goto(f"/cases/{case.pk}/")
    simulator.configure(tps=40, words=60)
    page.locator("[data-action=run-group][data-group-key=assessment]").click()
    expect(page.locator("[data-reasoning=summary]")).to_contain_text("Simulated reasoning")
    expect(_step(page, "differential")).to_have_attribute("data-status", "complete", timeout=30_000)
    page.get_by_role("link", name="Differential diagnosis").click()  # a stylesheet of its own
    expect(page.locator("#reasoning-summary")).to_be_hidden()
    page.get_by_label("Ask a follow-up question").fill("What next?")
    page.get_by_label("Ask a follow-up question").press("Enter")
    expect(page.get_by_label("Ask a follow-up question")).to_be_editable(timeout=30_000)
    page.get_by_role("link", name="Edit case").click()
    page.get_by_label("Vitals").fill("HR 120")
    page.get_by_role("button", name="Save").click()
    expect(_step(page, "summary")).to_have_attribute("data-status", "stale")

    django_user_model.objects.create_superuser("root", password="root-password-1")
    page.goto("/admin/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("root-password-1")
    page.get_by_role("button", name="Log in").click()
    run = StageRun.objects.filter(stage_key="summary").first()
    for path in (
        "/admin/",
        "/admin/workflow/stagerun/",
        f"/admin/workflow/stagerun/{run.pk}/change/",
        f"/admin/workflow/clinicalcase/{case.pk}/change/",
        "/admin/auth/user/add/",
    ):
        page.goto(path)
        expect(page.locator("#content")).to_be_visible()
    page.goto("/ops/")
    expect(
        page.get_by_role("img", name="Stage duration, last 24 hours (stage runs)")
    ).to_be_visible()
    page.screenshot(path=str(tmp_path / "operations.png"))
    page.evaluate("1")
    assert csp_violations == []


def test_the_policy_blocks_inline_code_and_the_guard_reports_it(workspace, csp_violations):
    page = workspace
    page.evaluate(
        """() => {
        const injected = document.createElement("div");
        injected.innerHTML = '<img src="x" onerror="window.ran = true">' +
          '<p style="color: red" id="styled">red?</p>';
        document.body.append(injected);
        const script = document.createElement("script");
        script.textContent = "window.ran = true";
        document.body.append(script);
      }"""
    )
    expect(page.locator("#styled")).to_be_attached()
    page.wait_for_timeout(200)
    assert page.evaluate("window.ran") is None  # neither the handler nor the script ran
    color = page.locator("#styled").evaluate("e => getComputedStyle(e).color")
    assert color != "rgb(255, 0, 0)"
    directives = {violation.split(" ")[0] for violation in csp_violations}
    assert {"script-src-attr", "script-src-elem", "style-src-attr"} <= directives, csp_violations
    csp_violations.clear()  # seen: the test passes


def test_links_the_model_writes_go_nowhere_in_any_panel(workspace, simulator):
    page = workspace
    elsewhere = []
    page.on("request", lambda request: "evil.example" in request.url and elsewhere.append(request))
    simulator.configure(faults=["links", "links"], tps=60, words=30)
    page.locator("[data-action=run-stage][data-stage-key=summary]").click()
    reasoning = page.locator("[data-reasoning=summary]")
    expect(reasoning).to_contain_text("https://evil.example/auto")  # while it streams
    expect(_step(page, "summary")).to_have_attribute("data-status", "complete", timeout=30_000)
    page.get_by_label("Ask a follow-up question").fill("Sources?")
    page.get_by_label("Ask a follow-up question").press("Enter")
    expect(page.locator("[data-reply]")).to_contain_text("evil.example/bare", timeout=30_000)
    expect(page.get_by_label("Ask a follow-up question")).to_be_editable(timeout=30_000)

    for panel in (reasoning, page.locator("[data-summary=summary]"), page.locator("[data-reply]")):
        expect(panel).to_contain_text("the guideline (https://evil.example/?case=leak)")
        expect(panel).to_contain_text('<a href="https://evil.example/raw">raw</a>')
        expect(panel.locator("a, img, [href], [src]")).to_have_count(0)
    page.reload()  # and as the page renders it from Postgres
    expect(
        page.locator(".ReasoningPanel a[href*=evil], .ChatContainer a[href*=evil]")
    ).to_have_count(0)
    expect(page.locator("[data-summary=summary]")).to_contain_text("https://evil.example/bare")
    assert elsewhere == []


def test_after_five_wrong_passwords_the_login_page_says_why_it_refuses(page, alice):
    page.goto("/accounts/login/")
    for _ in range(5):
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill("a wrong guess")
        page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Login refused for now")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text(
        "Too many failed logins for this username or from this address: logins are refused "
        "for 15 min from the last of those failures."
    )
    page.get_by_role("link", name="Back to the login page").click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-password-1")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Login refused for now")).to_be_visible()


def test_a_clinician_over_the_daily_budget_is_told_when_it_renews(workspace, case, simulator):
    page = workspace
    StageRun.objects.create(
        case=case, stage_key="summary", status="complete", engine="simulator",
        prompt_tokens=300_000, completion_tokens=100_000, reasoning="r", summary="s",
    )  # fmt: skip
    page.reload()
    page.locator("[data-action=run-stage][data-stage-key=differential]").click()
    notice = page.locator("#notice")
    expect(notice).to_contain_text("Daily limit reached: your generations used 400,000 of the")
    expect(notice).to_contain_text("It renews at 00:00 UTC, in")
    expect(page.locator("li[data-stage-key=differential]")).to_have_attribute("data-status", "idle")
