// Challenge page: wait for the server's pushed "done" event, then go to the finish URL.
// The iframe's postMessage is only a UI hint; the signed webhook is the sole authority
// so messages change the status text and nothing else.
(function () {
  "use strict";

  const REOPEN_DELAY_MS = 2000;
  const MAX_REOPENS = 30;
  const MAX_MESSAGE_CHARS = 4096;
  const hasEventSource = typeof window.EventSource !== "undefined";

  // English, unless the page gives its language's texts (data-text-* on #challenge).
  const ENGLISH = {
    waiting: "Waiting for the face check…",
    approved: "Checking your result…",
    failed: "The check did not pass. Waiting for the result…",
    done: "Done. Taking you back…",
    offline: "Live updates are unavailable. When you have finished the face check, select Continue.",
  };

  const main = document.getElementById("challenge");
  if (!main) {
    return;
  }
  const TEXT = {};
  Object.keys(ENGLISH).forEach(function (key) {
    const given = main.dataset["text" + key.charAt(0).toUpperCase() + key.slice(1)];
    TEXT[key] = typeof given === "string" && given ? given : ENGLISH[key];
  });
  const finishUrl = main.dataset.finishUrl || "";
  const eventsUrl = main.dataset.eventsUrl || "";
  const iframeOrigin = main.dataset.iframeOrigin || "";
  const statusEl = document.getElementById("challenge-status");
  const continueEl = document.getElementById("challenge-continue");

  let source = null;
  let reopenTimer = null;
  let reopens = 0;
  let navigated = false;

  function setStatus(text) {
    if (statusEl && statusEl.textContent !== text) {
      statusEl.textContent = text;
    }
  }

  // With a working push channel the "Continue" link is only a fallback: make it quiet,
  // never hidden or disabled.
  function quietContinue(quiet) {
    if (continueEl) {
      continueEl.classList.toggle("is-quiet", quiet);
    }
  }

  // Only ever navigate within our own origin; anything else falls back to the page's URL.
  function safeFinish(candidate) {
    if (typeof candidate === "string" && candidate) {
      try {
        const url = new URL(candidate, window.location.href);
        if (url.origin === window.location.origin) {
          return url.href;
        }
      } catch (e) {
        // Malformed URL: use the page's own finish URL.
      }
    }
    return finishUrl;
  }

  function parseJson(text) {
    if (typeof text !== "string" || !text || text.length > MAX_MESSAGE_CHARS) {
      return null;
    }
    try {
      return JSON.parse(text);
    } catch (e) {
      return null;
    }
  }

  function stopStream() {
    if (reopenTimer !== null) {
      window.clearTimeout(reopenTimer);
      reopenTimer = null;
    }
    if (source) {
      source.close();
      source = null;
    }
  }

  function finish(event) {
    if (navigated) {
      return;
    }
    navigated = true;
    stopStream();
    const data = parseJson(event && event.data);
    const target = safeFinish(data && typeof data === "object" ? data.finish : "");
    if (!target) {
      navigated = false;
      quietContinue(false);
      return;
    }
    setStatus(TEXT.done);
    window.location.assign(target);
  }

  function onStreamError() {
    // While CONNECTING, EventSource retries by itself; only a CLOSED stream needs us.
    if (navigated || !source || source.readyState !== EventSource.CLOSED) {
      return;
    }
    stopStream();
    if (reopens >= MAX_REOPENS) {
      quietContinue(false);
      setStatus(TEXT.offline);
      return;
    }
    reopens += 1;
    reopenTimer = window.setTimeout(function () {
      reopenTimer = null;
      openStream();
    }, REOPEN_DELAY_MS);
  }

  function openStream() {
    if (navigated || !eventsUrl || !hasEventSource) {
      return;
    }
    try {
      source = new EventSource(eventsUrl);
    } catch (e) {
      source = null;
      return;
    }
    source.addEventListener("open", function () {
      reopens = 0;
      quietContinue(true);
    });
    source.addEventListener("done", finish);
    source.addEventListener("error", onStreamError);
  }

  // The message's shape is not documented by the vendor: accept a string such as
  // "APPROVED", JSON text, or an object with a "status" field, in any case.
  function messageStatus(data, depth) {
    if (typeof data === "string") {
      const text = data.trim();
      if (depth < 2 && (text.charAt(0) === "{" || text.charAt(0) === '"')) {
        return messageStatus(parseJson(text), depth + 1);
      }
      return text.length <= 32 ? text.toUpperCase() : "";
    }
    if (data && typeof data === "object" && typeof data.status === "string") {
      return data.status.trim().toUpperCase();
    }
    return "";
  }

  function onMessage(event) {
    if (navigated || !iframeOrigin || event.origin !== iframeOrigin) {
      return;
    }
    const status = messageStatus(event.data, 0);
    if (status === "APPROVED") {
      setStatus(TEXT.approved);
    } else if (status === "FAILED") {
      setStatus(TEXT.failed);
    }
  }

  setStatus(TEXT.waiting);
  window.addEventListener("message", onMessage);

  // A page restored from the back/forward cache has a closed stream: start listening again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted || !hasEventSource || reopenTimer !== null) {
      return;
    }
    if (!source || source.readyState === EventSource.CLOSED) {
      stopStream();
      navigated = false;
      reopens = 0;
      setStatus(TEXT.waiting);
      openStream();
    }
  });

  if (hasEventSource) {
    openStream();
  }
})();
