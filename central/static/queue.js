// Review queue: live updates without a reload. Every few seconds the page asks central how many events
// matching its filters arrived since it was rendered (GET /review/updates, scoped on the server like the
// queue) and shows a "N new events — show" badge; following it reloads the queue. Polling rather than a held
// connection keeps it working through proxies and on phones that suspend background tabs.
(function () {
  "use strict";
  const badge = document.getElementById("new-events");
  if (!badge) {
    return;
  }
  const url = badge.dataset.poll;
  const interval = Number(document.body.dataset.pollMs || 5000);
  badge.href = window.location.pathname + window.location.search;

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const body = await response.json();
        if (body.new > 0) {
          badge.querySelector(".n").textContent = String(body.new);
          badge.hidden = false;
        }
      }
    } catch (err) {
      // Offline for a moment: try again at the next tick.
    }
    window.setTimeout(poll, interval);
  }
  window.setTimeout(poll, interval);
})();
