// The little the workspace needs beyond htmx: follow new text, select a stage, tick the
// elapsed time, send chat on Enter.
(function () {
  "use strict";
  const NEAR_BOTTOM = 48;
  const PANELS = ".ReasoningPanel, .ChatContainer";
  const pinned = new WeakMap();

  function jumpButton(panel) { return panel.querySelector("[data-jump-latest]"); }

  function toBottom(panel) {
    panel.scrollTop = panel.scrollHeight;
    pinned.set(panel, true);
    const button = jumpButton(panel);
    if (button) { button.hidden = true; }
  }

  // Follow new text unless the clinician scrolled up to read; then offer a way back.
  document.addEventListener("scroll", function (event) {
    const panel = event.target;
    if (!(panel instanceof Element) || !panel.matches(PANELS)) { return; }
    const atBottom = panel.scrollHeight - panel.scrollTop - panel.clientHeight < NEAR_BOTTOM;
    pinned.set(panel, atBottom);
    const button = jumpButton(panel);
    if (button && atBottom) { button.hidden = true; }
  }, true);

  document.addEventListener("htmx:sseMessage", function () {
    document.querySelectorAll(PANELS).forEach(function (panel) {
      if (pinned.get(panel) === false) {
        const button = jumpButton(panel);
        if (button) { button.hidden = false; }
      } else {
        panel.scrollTop = panel.scrollHeight;
      }
    });
  });

  document.addEventListener("click", function (event) {
    const jump = event.target.closest("[data-jump-latest]");
    if (jump) { toBottom(jump.closest(PANELS)); return; }

    const select = event.target.closest("[data-select-stage]");
    if (select) {
      event.preventDefault();
      selectStage(select.dataset.selectStage);
      return;
    }
    if (event.target.closest("[data-show-all-stages]")) { selectStage(null); }
  });

  // The selection is a style rule, so it survives the panel's sections being swapped.
  function selectStage(key) {
    const panel = document.getElementById("reasoning-panel");
    const style = document.getElementById("stage-selection");
    if (!panel || !style) { return; }
    if (key) {
      panel.dataset.selected = key;
      style.textContent = ".reasoning:not(#reasoning-" + key + ") { display: none; }" +
        " #step-" + key + " { outline: 2px solid var(--accent); }";
    } else {
      delete panel.dataset.selected;
      style.textContent = "";
    }
    const showAll = panel.querySelector("[data-show-all-stages]");
    if (showAll) { showAll.hidden = !key; }
    const url = new URL(window.location.href);
    if (key) { url.searchParams.set("stage", key); } else { url.searchParams.delete("stage"); }
    history.replaceState(null, "", url);
  }

  function tick() {
    document.querySelectorAll("[data-started-at] .elapsed").forEach(function (el) {
      const started = Date.parse(el.closest("[data-started-at]").dataset.startedAt);
      const seconds = Math.max(0, Math.floor((Date.now() - started) / 1000));
      el.textContent = Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:sseMessage", tick);

  // Enter sends; Shift+Enter breaks the line.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) { return; }
    const input = event.target.closest("#chat-input");
    if (!input || !input.value.trim()) { return; }
    event.preventDefault();
    input.form.requestSubmit();
  });

  // When the event stream cannot reconnect after several tries, say so and refresh the
  // panels by polling the page until nothing is running any more.
  const FAILURES_BEFORE_POLLING = 3;
  const POLL_MILLISECONDS = 3000;
  let failures = 0;
  let polling = false;

  document.addEventListener("htmx:sseOpen", function () { failures = 0; });
  document.addEventListener("htmx:sseError", function () {
    failures += 1;
    if (failures >= FAILURES_BEFORE_POLLING && !polling) { startPolling(); }
  });

  function say(text) {
    const notice = document.getElementById("notice");
    if (notice) { notice.textContent = text; }
  }

  function startPolling() {
    htmx.swap("#stream-host", '<div id="stream-host"></div>', { swapStyle: "outerHTML" });
    say("Live updates are unavailable. Refreshing every few seconds until the work ends.");
    polling = true;
    refresh();
  }

  function replace(fresh, selector) {
    fresh.querySelectorAll(selector).forEach(function (element) {
      const old = element.id && document.getElementById(element.id);
      if (old) {
        old.replaceWith(element);
        htmx.process(element);
      }
    });
  }

  async function refresh() {
    const fresh = await fetchPage();
    if (fresh) {
      const working = fresh.querySelector('[data-status="running"], [data-status="queued"]');
      replace(fresh, "#stepper, .reasoning, #chat-log, #chat-form");  // moves them out of `fresh`
      if (!working) {
        say("Live updates are unavailable; this page shows the finished work. Reload to try live updates again.");
        return;
      }
    }
    setTimeout(refresh, POLL_MILLISECONDS);
  }

  async function fetchPage() {
    try {
      const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
      if (response.ok) {
        return new DOMParser().parseFromString(await response.text(), "text/html");
      }
    } catch (error) {
      // offline for now: try again at the next tick
    }
    return null;
  }

  document.addEventListener("DOMContentLoaded", function () {
    const panel = document.getElementById("reasoning-panel");
    if (panel && panel.dataset.selected) { selectStage(panel.dataset.selected); }
    tick();
  });
})();
