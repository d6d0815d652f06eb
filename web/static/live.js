// The dashboard's only script. Pages work without it (server-rendered tables and charts);
// with it they get:
//  1) live updates: every element with data-live="<url>" is refreshed from that HTML fragment
//     every few seconds, sending the last ETag so an unchanged fragment costs a 304; a list
//     with data-live-rows gets only the rows changed since its last answer;
//  2) the comparison selection kept in the URL (?sel=1,5), so a page can be shared as it is;
//  3) chart downloads (SVG as drawn, PNG rendered from it);
//  4) admin actions (cancel, requeue, promote) once a token is typed in the header: the token
//     stays in this tab's sessionStorage and goes out as a bearer header, never as a cookie.
(function () {
  "use strict";
  const PERIOD_MS = 2000;
  const PAGE_ROWS = 200;  // the overview lists the newest 200: an older changed run stays off it
  const TOKEN_KEY = "pax.adminToken";
  const MSG_KEY = "pax.actionMessage";

  // ---------------------------------------------------------------- 2) selection in the URL
  function selection() {
    const sel = new URLSearchParams(location.search).get("sel");
    return new Set((sel || "").split(",").filter(Boolean));
  }
  function saveSelection(ids) {
    const q = new URLSearchParams(location.search);
    if (ids.size) q.set("sel", [...ids].join(",")); else q.delete("sel");
    const qs = q.toString().replace(/%2C/g, ",");  // ids read better as 1,5,9
    history.replaceState(null, "", location.pathname + (qs ? "?" + qs : "") + location.hash);
    countSelection(ids);
  }
  function countSelection(ids) {
    const btn = document.getElementById("compare-selected");
    if (btn) btn.textContent = ids.size ? `Compare selected (${ids.size})` : "Compare selected";
  }
  function applySelection(root) {
    const ids = selection();
    root.querySelectorAll("input.pick").forEach(function (box) { box.checked = ids.has(box.value); });
  }
  document.addEventListener("change", function (ev) {
    const box = ev.target;
    if (!box.matches || !box.matches("input.pick")) return;
    const ids = selection();
    if (box.checked) ids.add(box.value); else ids.delete(box.value);
    saveSelection(ids);
    applySelection(document);  // a run listed twice (the baseline on each axis) ticks as one
  });
  document.addEventListener("submit", function (ev) {
    // the compare form sends the whole selection, also ticks on rows no longer listed
    if (ev.target.id !== "compare-form") return;
    ev.preventDefault();
    const ids = selection();
    document.querySelectorAll("input.pick:checked").forEach(function (b) { ids.add(b.value); });
    location.href = "/compare?runs=" + [...ids].join(",");
  });

  // ---------------------------------------------------------------- 3) chart downloads
  function enhance(root) {
    root.querySelectorAll(".chart-tools").forEach(function (el) { el.hidden = false; });
  }
  function save(blob, name) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  function download(btn) {
    const svg = btn.closest("figure").querySelector("svg");
    const text = new XMLSerializer().serializeToString(svg);
    const name = btn.dataset.name;
    if (btn.dataset.download === "svg") {
      save(new Blob([text], { type: "image/svg+xml" }), name + ".svg");
      return;
    }
    const box = svg.viewBox.baseVal;
    const img = new Image();
    img.onload = function () {
      const c = document.createElement("canvas");
      c.width = box.width * 2; c.height = box.height * 2;  // 2x: sharp on print and HiDPI
      const g = c.getContext("2d");
      g.drawImage(img, 0, 0, c.width, c.height);
      c.toBlob(function (b) { save(b, name + ".png"); }, "image/png");
    };
    img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(text);
  }

  // ---------------------------------------------------------------- 4) admin actions
  function token() { return sessionStorage.getItem(TOKEN_KEY); }
  function say(text, bad) {
    const el = document.getElementById("action-msg");
    if (!el) return;
    el.textContent = text;
    el.classList.toggle("bad", !!bad);
    el.hidden = false;
  }
  function showAdmin() {
    const has = !!token();
    const form = document.getElementById("token-form");
    const state = document.getElementById("token-state");
    if (form) form.hidden = has;
    if (state) state.hidden = !has;
    document.querySelectorAll(".admin-only").forEach(function (el) { el.hidden = !has; });
  }
  async function act(btn) {
    if (!window.confirm(btn.dataset.confirm || "Are you sure?")) return;
    btn.disabled = true;
    try {
      const r = await fetch(btn.dataset.action, {
        method: "POST",
        headers: { "Authorization": "Bearer " + token(), "Content-Type": "application/json" },
        credentials: "omit",
      });
      let body = null;
      try { body = await r.json(); } catch (e) { /* not JSON */ }
      if (r.ok) {
        sessionStorage.setItem(MSG_KEY, btn.textContent.trim() + ": done.");
        location.reload();
        return;
      }
      const detail = body && body.detail !== undefined ? body.detail : r.statusText;
      // the API's words, verbatim: a budget refusal carries its forecast
      say("Refused (" + r.status + "): " +
          (typeof detail === "string" ? detail : JSON.stringify(detail)), true);
    } catch (e) {
      say("The service did not answer: " + e, true);
    } finally {
      btn.disabled = false;
    }
  }
  document.addEventListener("click", function (ev) {
    const btn = ev.target.closest ? ev.target.closest("button") : null;
    if (!btn) return;
    if (btn.dataset.download) download(btn);
    else if (btn.dataset.action) act(btn);
    else if (btn.id === "token-forget") { sessionStorage.removeItem(TOKEN_KEY); showAdmin(); }
  });
  document.addEventListener("submit", function (ev) {
    if (ev.target.id !== "token-form") return;
    ev.preventDefault();
    const v = document.getElementById("admin-token").value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    document.getElementById("admin-token").value = "";
    showAdmin();
  });

  // ---------------------------------------------------------------- 1) live fragments
  async function refresh(el) {
    try {
      const headers = { "X-Requested-With": "live" };
      if (el.dataset.etag) headers["If-None-Match"] = el.dataset.etag;
      const r = await fetch(el.dataset.live, { headers: headers, cache: "no-store" });
      if (r.status === 304 || !r.ok) return;
      el.dataset.etag = r.headers.get("ETag") || "";
      const html = await r.text();
      if (html !== el.dataset.last) {
        el.innerHTML = html;
        el.dataset.last = html;
        applySelection(el);
        enhance(el);
      }
    } catch (e) { /* the service may be restarting: try again next tick */ }
  }
  // a long list asks only for the rows changed since its last answer, and patches them in
  // (newest run first, as the server orders them); rows that left its filter are removed
  async function refreshRows(el) {
    try {
      const url = el.dataset.liveRows + (el.dataset.liveRows.includes("?") ? "&" : "?") +
        "since=" + encodeURIComponent(el.dataset.since);
      const r = await fetch(url, { headers: { "X-Requested-With": "live" }, cache: "no-store" });
      if (!r.ok) return;
      el.dataset.since = r.headers.get("X-Pax-Now") || el.dataset.since;
      const total = document.getElementById("runs-total");
      if (total && r.headers.get("X-Pax-Total")) total.textContent = r.headers.get("X-Pax-Total");
      (r.headers.get("X-Pax-Gone") || "").split(",").filter(Boolean).forEach(function (id) {
        const row = document.getElementById("run-row-" + id);
        if (row) row.remove();
      });
      if (r.status === 204) return;
      const tmp = document.createElement("tbody");
      tmp.innerHTML = await r.text();
      [...tmp.querySelectorAll("tr[data-run]")].forEach(function (tr) {
        const old = document.getElementById(tr.id);
        if (old) { old.replaceWith(tr); return; }
        const id = Number(tr.dataset.run);
        const after = [...el.querySelectorAll("tr[data-run]")].find(function (x) {
          return Number(x.dataset.run) < id;
        });
        if (after) el.insertBefore(tr, after);
        else if (el.querySelectorAll("tr[data-run]").length < PAGE_ROWS) el.appendChild(tr);
        const empty = el.querySelector("tr:not([data-run])");
        if (empty) empty.remove();
      });
      applySelection(el);
    } catch (e) { /* the service may be restarting: try again next tick */ }
  }
  function tick() {
    if (document.hidden) return;
    document.querySelectorAll("[data-live]").forEach(refresh);
    document.querySelectorAll("[data-live-rows]").forEach(refreshRows);
  }

  function start() {
    enhance(document);
    applySelection(document);
    countSelection(selection());
    showAdmin();
    const msg = sessionStorage.getItem(MSG_KEY);
    if (msg) { sessionStorage.removeItem(MSG_KEY); say(msg, false); }
    setInterval(tick, PERIOD_MS);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
