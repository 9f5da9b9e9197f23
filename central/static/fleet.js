// Fleet health: re-fetch the node table every few seconds so a technician sees nodes come and go live.
// Progressive enhancement: without JavaScript the page is complete, just not refreshed.
(function () {
  "use strict";
  const box = document.getElementById("fleet-table");
  if (!box) return;
  const url = box.dataset.refresh;
  const every = Number(box.dataset.everyMs) || 5000;
  async function refresh() {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (response.ok && !response.redirected) {
        box.innerHTML = await response.text();
        const count = document.getElementById("fleet-count");
        if (count) count.textContent = String(box.querySelectorAll("tbody tr").length);
        box.dataset.refreshedAt = String(Date.now());
      }
    } catch (err) {
      // network hiccup: keep the last table, try again at the next tick
    }
    window.setTimeout(refresh, every);
  }
  window.setTimeout(refresh, every);
})();
