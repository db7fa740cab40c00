// Progressive enhancement only: every page works without this file.
// Words shown from here come translated from base.html, as data attributes on <body>.
(() => {
  "use strict";

  const words = (name, fallback) => (document.body && document.body.dataset[name]) || fallback;

  // Copy buttons: <button type="button" data-copy="ELEMENT_ID">.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(() => {
      const label = button.textContent;
      button.textContent = words("copied", "Copied");
      setTimeout(() => { button.textContent = label; }, 1500);
    });
  });

  // A refused form puts its error summary (templates/_macros.html) first: focus it, on load and after
  // an htmx swap brings a new one, so a screen reader reads the problems and Tab goes on to the links.
  // A link in it focuses its field, not just scrolls to it.
  const summariesSeen = new WeakSet();
  function focusNewSummary() {
    const summary = document.getElementById("error-summary");
    if (!summary || summariesSeen.has(summary)) return;
    summariesSeen.add(summary);
    summary.focus();
  }
  focusNewSummary();  // the script is deferred: the page is parsed by now
  document.addEventListener("htmx:afterSettle", focusNewSummary);
  document.addEventListener("click", (event) => {
    const link = event.target.closest(".error-summary a[href^='#']");
    const field = link && document.getElementById(decodeURIComponent(link.hash.slice(1)));
    if (!field) return;
    event.preventDefault();
    field.scrollIntoView({ block: "center" });
    const control = field.matches("input, select, textarea, button, [tabindex]")
      ? field : field.querySelector("input:not([type=hidden]), select, textarea") || field;
    control.focus({ preventScroll: true });
  });

  // An htmx request that failed leaves the page as it was: say so, at the top of <main>, where a
  // screen reader hears it (role="alert") and the keyboard lands (it takes focus).
  const BANNER_ID = "request-error";

  function showError(message) {
    const main = document.getElementById("main") || document.body;
    let banner = document.getElementById(BANNER_ID);
    if (!banner) {
      banner = document.createElement("div");
      banner.id = BANNER_ID;
      banner.className = "notice error request-error";
      banner.setAttribute("role", "alert");
      banner.tabIndex = -1;
      const text = document.createElement("p");
      const close = document.createElement("button");
      close.type = "button";
      close.className = "small";
      close.textContent = "×";
      close.setAttribute("aria-label", words("dismiss", "Dismiss"));
      close.addEventListener("click", () => banner.remove());
      banner.append(text, close);
    }
    banner.querySelector("p").textContent = message;
    main.prepend(banner);
    banner.focus();
    banner.scrollIntoView({ block: "nearest" });
  }

  function statusMessage(xhr) {
    const type = (xhr.getResponseHeader("Content-Type") || "").toLowerCase();
    const text = (xhr.responseText || "").trim();
    // A short plain-text answer is meant for people (views/csrf.py: "This form has expired..."), and
    // already in their language; anything else (an HTML error page) gets the general words.
    if (type.startsWith("text/plain") && text && text.length <= 300) return text;
    return words("errorStatus", "Something went wrong (error {status}). Reload the page and try again.")
      .replace("{status}", String(xhr.status));
  }

  document.addEventListener("htmx:responseError", (event) => showError(statusMessage(event.detail.xhr)));
  document.addEventListener("htmx:sendError", () => {
    showError(words("errorNetwork", "Could not reach the server. Check your connection and try again."));
  });
  // A later request that works clears the old complaint.
  document.addEventListener("htmx:afterRequest", (event) => {
    if (event.detail.successful) document.getElementById(BANNER_ID)?.remove();
  });
  document.addEventListener("keydown", (event) => {
    const banner = document.getElementById(BANNER_ID);
    if (event.key === "Escape" && banner && banner.contains(document.activeElement)) banner.remove();
  });
})();
