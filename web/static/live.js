// Live updates without a reload: every element with data-live="<url>" is refreshed from that
// HTML fragment every few seconds. Pages work without this script (server-rendered tables).
(function () {
  const PERIOD_MS = 2000;
  async function refresh(el) {
    try {
      const r = await fetch(el.dataset.live, { headers: { "X-Requested-With": "live" } });
      if (r.ok) {
        const html = await r.text();
        if (html !== el.dataset.last) { el.innerHTML = html; el.dataset.last = html; }
      }
    } catch (e) { /* the service may be restarting: try again next tick */ }
  }
  function tick() {
    if (document.hidden) return;
    document.querySelectorAll("[data-live]").forEach(refresh);
  }
  setInterval(tick, PERIOD_MS);
})();
