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

  document.addEventListener("DOMContentLoaded", function () {
    const panel = document.getElementById("reasoning-panel");
    if (panel && panel.dataset.selected) { selectStage(panel.dataset.selected); }
    tick();
  });
})();
