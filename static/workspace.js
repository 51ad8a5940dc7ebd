// The little the workspace needs beyond htmx: follow new text and reveal it at a steady
// pace, select a stage, tick the elapsed time, send chat on Enter.
(function () {
  "use strict";
  // Follow the live text: in the ReasoningPanel the stage being written (a stage run
  // again in the middle streams there, not at the bottom), in the chat the newest
  // message. A reader who scrolls away from it is left alone and offered a way back.
  const NEAR = 48;
  const SCROLLERS = "#reasoning-panel, #chat-log";
  const pinned = new WeakMap();

  function jumpButton(scroller) {
    return document.querySelector('[data-jump-to="' + scroller.id + '"]');
  }

  // How far the live point lies below the scroller's visible part (above it: negative);
  // null when nothing is being written there, or what is is hidden by the selection.
  function liveOffset(scroller) {
    if (scroller.id === "chat-log") {
      return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
    }
    const live = scroller.querySelector('.reasoning[data-status="running"]');
    if (!live || !live.offsetParent) { return null; }
    return live.getBoundingClientRect().bottom - scroller.getBoundingClientRect().bottom;
  }

  function toLive(scroller) {
    scroller.scrollTop += liveOffset(scroller) || 0;
    pinned.set(scroller, true);
    const button = jumpButton(scroller);
    if (button) { button.hidden = true; }
  }

  document.addEventListener("scroll", function (event) {
    const scroller = event.target;
    if (!(scroller instanceof Element) || !scroller.matches(SCROLLERS)) { return; }
    const offset = liveOffset(scroller);
    const atLive = offset === null || Math.abs(offset) < NEAR;
    pinned.set(scroller, atLive);
    const button = jumpButton(scroller);
    if (button && atLive) { button.hidden = true; }
  }, true);

  function followText() {
    document.querySelectorAll(SCROLLERS).forEach(function (scroller) {
      if (liveOffset(scroller) === null) { return; }
      if (pinned.get(scroller) === false) {
        const button = jumpButton(scroller);
        if (button) { button.hidden = false; }
      } else {
        toLive(scroller);
      }
    });
  }
  // After a delta, once a frame at most: each look at where the live text is lays the
  // page out again, and a long block being written makes that the page's main cost.
  // After a full-state event at once, before a scroll the redraw caused is taken for
  // the reader's.
  let following = 0;
  document.addEventListener("htmx:sseMessage", function (event) {
    if (event.detail.type !== "delta") {
      followText();
    } else if (!following) {
      following = requestAnimationFrame(function () { following = 0; followText(); });
    }
  });

  // Reveal streamed text at a steady pace: each delta's text is spelled out over about
  // the time between deltas, so it flows instead of arriving in bursts, and is whole
  // before the next one starts (never more than one interval behind). Text a full-state
  // event or the page itself brings is shown at once; so is everything for a reader who
  // asks for reduced motion.
  const PIECES = ".stream-text > span:not([data-shown])";
  const LONGEST_REVEAL_MS = 100;
  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
  let revealing = [];
  let frame = 0;
  let lastDelta = 0;
  let interval = 33;

  function markShown(spans) { spans.forEach(function (span) { span.dataset.shown = ""; }); }

  document.addEventListener("htmx:sseMessage", function (event) {
    const fresh = document.querySelectorAll(PIECES);
    markShown(fresh);
    if (event.detail.type !== "delta" || reducedMotion.matches) { return; }
    const now = performance.now();
    if (lastDelta) {
      interval = 0.7 * interval + 0.3 * Math.min(now - lastDelta, LONGEST_REVEAL_MS);
    }
    lastDelta = now;
    revealing.forEach(function (piece) { piece.span.textContent = piece.text; });
    revealing = Array.from(fresh, function (span) {
      const piece = { span: span, text: span.textContent, start: now };
      span.textContent = "";
      return piece;
    });
    if (!frame) { frame = requestAnimationFrame(revealStep); }
  });

  function revealStep(now) {
    frame = 0;
    if (!revealing.length) { return; }
    const share = Math.min(1, Math.max(0, now - revealing[0].start) / interval);
    revealing.forEach(function (piece) {
      piece.span.textContent = piece.text.slice(0, Math.ceil(piece.text.length * share));
    });
    followText();
    if (share < 1) {
      frame = requestAnimationFrame(revealStep);
    } else {
      revealing = [];
    }
  }

  document.addEventListener("click", function (event) {
    const jump = event.target.closest("[data-jump-to]");
    if (jump) { toLive(document.getElementById(jump.dataset.jumpTo)); return; }

    const select = event.target.closest("[data-select-stage]");
    if (select) {
      event.preventDefault();
      selectStage(select.dataset.selectStage);
      return;
    }
    const copy = event.target.closest("[data-copy-note]");
    if (copy) { copyNote(copy.dataset.copyNote); return; }
    if (event.target.closest("[data-print]")) { window.print(); return; }
    if (event.target.closest("[data-show-all-stages]")) { selectStage(null); }
    if (event.target.closest("[data-toggle-stages]")) {
      document.querySelector(".workspace").toggleAttribute("data-stages-shown");
      markStagesShown();
    }
  });

  // The selection is a style rule, so it survives the panel's sections being swapped. A
  // constructed stylesheet: the Content-Security-Policy allows no inline <style>.
  const selection = new CSSStyleSheet();
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, selection];

  function selectStage(key) {
    const panel = document.getElementById("reasoning-panel");
    if (!panel) { return; }
    if (key) {
      panel.dataset.selected = key;
      selection.replaceSync(".reasoning:not(#reasoning-" + CSS.escape(key) + ") { display: none; }" +
        " #step-" + CSS.escape(key) + " { outline: 2px solid var(--accent); }");
    } else {
      delete panel.dataset.selected;
      selection.replaceSync("");
    }
    const showAll = panel.querySelector("[data-show-all-stages]");
    if (showAll) { showAll.hidden = !key; }
    markCurrentStage();
    const url = new URL(window.location.href);
    if (key) { url.searchParams.set("stage", key); } else { url.searchParams.delete("stage"); }
    history.replaceState(null, "", url);
  }

  // The assessment-and-plan note, as plain text for the chart, onto the clipboard.
  async function copyNote(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.redirected) {  // to the login: the session ended
      say("You were logged out: log in again, then copy the note.");
      return;
    }
    if (!response.ok) {
      say("There is no note yet: run the assessment and plan note first.");
      return;
    }
    try {
      await navigator.clipboard.writeText(await response.text());
      say("Note copied: paste it into the chart.");
    } catch (refused) {
      say("This browser did not let the page copy: the note is in Download report.");
    }
  }

  // The stepper is redrawn by events that know nothing of the selection: mark it again.
  function markCurrentStage() {
    const panel = document.getElementById("reasoning-panel");
    const key = panel && panel.dataset.selected;
    document.querySelectorAll("[data-select-stage]").forEach(function (link) {
      if (link.dataset.selectStage === key) {
        link.setAttribute("aria-current", "true");
      } else {
        link.removeAttribute("aria-current");
      }
    });
  }
  document.addEventListener("htmx:oobAfterSwap", markCurrentStage);

  // On a phone the stepper is one line until opened; it stays open through its redraws.
  function markStagesShown() {
    const shown = document.querySelector(".workspace[data-stages-shown]") !== null;
    document.querySelectorAll("[data-toggle-stages]").forEach(function (button) {
      button.setAttribute("aria-expanded", String(shown));
    });
  }
  document.addEventListener("htmx:oobAfterSwap", markStagesShown);

  // Focus is never lost to a redraw. When an event replaces the control the clinician
  // last used, focus goes to its counterpart in the new markup: the same stage's or
  // group's Stop while it runs and its Run again once it is over; the chat input after
  // Send or a reply's Stop. Focus the clinician has moved elsewhere is left alone.
  let lastUsed = null;
  document.addEventListener("focusin", function (event) { lastUsed = event.target; });

  function counterparts(used) {
    const data = used.dataset;
    if (used.closest("#chat-form") || data.messageId) { return ["#chat-input"]; }
    if (data.selectStage) { return ['[data-select-stage="' + CSS.escape(data.selectStage) + '"]']; }
    // A stage run after the stages it needs is a group named after the stage: its Stop
    // stops them all.
    if (data.stageKey) {
      const step = "#step-" + CSS.escape(data.stageKey);
      return ['[data-action=cancel][data-group-key="' + CSS.escape(data.stageKey) + '"]',
              step + " [data-action=cancel]", step + " [data-action=run-stage]",
              step + " [data-select-stage]"];
    }
    if (data.groupKey) {
      const group = '[data-group-key="' + CSS.escape(data.groupKey) + '"]';
      return ["[data-action=cancel]" + group, "[data-action=run-group]" + group,
              "#step-" + CSS.escape(data.groupKey) + " [data-action=run-stage]"];
    }
    return [];
  }

  function keepFocus() {
    const lost = !document.activeElement || document.activeElement === document.body;
    if (!lastUsed || lastUsed.isConnected || !lost) { return; }
    for (const selector of counterparts(lastUsed)) {
      const next = document.querySelector(selector);
      if (next && !next.disabled) {
        next.focus();
        return;
      }
    }
  }
  document.addEventListener("htmx:oobAfterSwap", keepFocus);

  // Screen readers hear what matters once. A stage starting, ending or being retried is
  // said in a status region no event redraws (a redrawn region's words are lost); the
  // chat log is busy while a summary or reply is written, so it is read whole when done.
  const FAILED = new Set(["error", "interrupted", "cancelled"]);
  let heard = null;
  let laneHeard = null;  // the can't-miss diagnoses already said

  function newOnTheLane() {
    const items = Array.from(document.querySelectorAll("[data-cant-miss-item]"),
      function (item) { return item.textContent; });
    const fresh = laneHeard ? items.filter(function (item) { return !laneHeard.includes(item); }) : [];
    laneHeard = items;
    return fresh.length ? "Must not miss: " + fresh.join(", ") + "." : "";
  }

  function stagesNow() {
    const now = new Map();
    document.querySelectorAll("#stepper li[data-stage-key]").forEach(function (step) {
      const notice = document.querySelector('[data-notice="' + CSS.escape(step.dataset.stageKey) + '"]');
      now.set(step.dataset.stageKey, { step: step, status: step.dataset.status,
                                       notice: notice ? notice.textContent : "" });
    });
    return now;
  }

  function whatChanged(key, stage) {
    const before = heard.get(key);
    if (before && before.status === stage.status) {
      return stage.notice !== before.notice ? stage.notice : "";
    }
    const problem = document.querySelector("#reasoning-" + CSS.escape(key) + " .run-error p");
    if (FAILED.has(stage.status) && problem) { return problem.textContent; }
    const title = stage.step.querySelector(".step-title").textContent;
    return title + ": " + stage.step.querySelector(".status-name").textContent + ".";
  }

  function announce() {
    const now = stagesNow();
    const lane = newOnTheLane();
    if (heard) {
      const said = Array.from(now, function ([key, stage]) { return whatChanged(key, stage); });
      const words = [lane, ...said].join(" ").replace(/\s+/g, " ").trim();
      if (words) { document.getElementById("announcer").textContent = words; }
    }
    heard = now;
    const log = document.getElementById("chat-log");
    const writing = log && log.querySelector('[data-status="running"], [data-status="queued"]');
    if (log) { log.setAttribute("aria-busy", writing ? "true" : "false"); }
  }
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    const replaced = event.detail.target;  // already out of the page
    if (["stepper", "chat-log", "cant-miss"].includes(replaced.id) || replaced.matches("[data-chat-message]")) {
      announce();
    }
  });

  function tick() {
    document.querySelectorAll("[data-started-at] .elapsed").forEach(function (el) {
      const started = Date.parse(el.closest("[data-started-at]").dataset.startedAt);
      const seconds = Math.max(0, Math.floor((Date.now() - started) / 1000));
      el.textContent = Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
    });
  }
  setInterval(tick, 1000);
  document.addEventListener("htmx:sseMessage", tick);

  // Enter sends; Shift+Enter breaks the line. While a reply is written the input stays
  // focusable but read-only.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) { return; }
    const input = event.target.closest("#chat-input");
    if (!input || input.readOnly || !input.value.trim()) { return; }
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
    refresh({ "X-Fallback": "polling" });  // counted once, in the server's metrics
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

  async function refresh(headers) {
    const fresh = await fetchPage(headers);
    if (fresh) {
      const working = fresh.querySelector('[data-status="running"], [data-status="queued"]');
      replace(fresh, "#stepper, #cant-miss, .reasoning, #chat-log, #chat-form");  // moves them out of `fresh`
      markStagesShown();
      announce();
      if (!working) {
        say("Live updates are unavailable; this page shows the finished work. Reload to try live updates again.");
        return;
      }
    }
    setTimeout(refresh, POLL_MILLISECONDS);
  }

  // The page again, by the page itself (a poll, a catch-up): the audit counts no view.
  async function fetchPage(headers) {
    try {
      const response = await fetch(window.location.href,
        { headers: { Accept: "text/html", "X-Page-Refresh": "true", ...headers } });
      if (response.ok) {
        return new DOMParser().parseFromString(await response.text(), "text/html");
      }
    } catch (error) {
      // offline for now: try again at the next tick
    }
    return null;
  }

  // Another page of the case can change what this one shows (a stage run again there
  // turns stages stale here). A page following a stream hears of it with its next event;
  // one that follows none catches up when the clinician comes back to it.
  function states(root) {
    return Array.from(root.querySelectorAll("#stepper li[data-stage-key], #chat-log [data-status]"),
      function (element) { return element.id + ":" + element.dataset.status; }).join(" ");
  }

  async function catchUp() {
    const host = document.getElementById("stream-host");
    if (document.visibilityState !== "visible" || polling || !host || host.hasAttribute("sse-connect")) {
      return;
    }
    const fresh = await fetchPage({});
    if (!fresh || host.isConnected === false || host.hasAttribute("sse-connect")) { return; }
    if (states(fresh) !== states(document)) {
      const input = document.getElementById("chat-input");
      const draft = input && input.value.trim() ? "" : ", #chat-form";  // a draft is kept
      replace(fresh, "#stepper, #cant-miss, .reasoning, #chat-log, #stream-host" + draft);
      markCurrentStage();
      markStagesShown();
      announce();
    }
  }
  document.addEventListener("visibilitychange", catchUp);
  window.addEventListener("focus", catchUp);

  document.addEventListener("DOMContentLoaded", function () {
    markShown(document.querySelectorAll(PIECES));
    const panel = document.getElementById("reasoning-panel");
    if (panel && panel.dataset.selected) { selectStage(panel.dataset.selected); }
    announce();
    tick();
  });
})();
