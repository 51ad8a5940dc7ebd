// Keep streaming panels scrolled to the newest text, unless the clinician scrolled up to read.
(function () {
  const NEAR_BOTTOM = 48;
  const pinned = new WeakMap();
  function panels() { return document.querySelectorAll(".ReasoningPanel, .ChatContainer"); }
  document.addEventListener("scroll", function (event) {
    const el = event.target;
    if (el instanceof Element && el.matches(".ReasoningPanel, .ChatContainer")) {
      pinned.set(el, el.scrollHeight - el.scrollTop - el.clientHeight < NEAR_BOTTOM);
    }
  }, true);
  document.addEventListener("htmx:sseMessage", function () {
    panels().forEach(function (el) {
      if (pinned.get(el) !== false) { el.scrollTop = el.scrollHeight; }
    });
  });
})();
