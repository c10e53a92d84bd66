// The simulated face-check iframe: record the chosen outcome with the
// simulator (which sends the signed webhook), then tell the parent window like the real iframe.
"use strict";

(function () {
  const main = document.querySelector("main[data-outcome-url]");
  const result = document.getElementById("result");
  if (!main || !result) {
    return;
  }
  const buttons = Array.from(main.querySelectorAll("button[data-outcome]"));

  function setDisabled(disabled) {
    buttons.forEach(function (button) {
      button.disabled = disabled;
    });
  }

  function describe(button) {
    const reason = button.dataset.failReason;
    return reason ? "Failed (" + reason + ")" : button.textContent.trim();
  }

  async function record(status, failReason) {
    return fetch(main.dataset.outcomeUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ status: status, failReason: failReason }),
      credentials: "omit",
    });
  }

  async function choose(button) {
    const status = button.dataset.outcome;
    setDisabled(true);
    result.textContent = "Sending the result…";
    let response;
    try {
      response = await record(status, button.dataset.failReason || null);
    } catch (err) {
      result.textContent = "The simulator could not be reached. Try again.";
      setDisabled(false);
      return;
    }
    if (response.status === 409) {
      result.textContent = "This face check has already ended.";
      return;
    }
    if (!response.ok) {
      result.textContent = "The simulator refused the result (HTTP " + response.status + ").";
      setDisabled(false);
      return;
    }
    result.textContent = "Result sent: " + describe(button) + ".";
    // The real iframe only ever reports APPROVED or FAILED, to any origin (§3); the webhook
    // remains the authority, so receiving pages must check event.origin and treat it as a hint.
    window.parent.postMessage({ status: status === "SUCCESS" ? "APPROVED" : "FAILED" }, "*");
  }

  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      choose(button);
    });
  });
})();
