// Patrol console: live progress (Server-Sent Events), the token dialog,
// the cancel and retry buttons, and a schedule's buttons. Plain JavaScript, no build step.
"use strict";

const ORDER = ["ok", "warn", "fail", "error", "dead", "cancelled", "skipped", "running", "retrying"];
const TOKEN_KEY = "patrol-token";

function $(sel, root) { return (root || document).querySelector(sel); }
function $$(sel, root) { return Array.from((root || document).querySelectorAll(sel)); }

// Bars drawn by the server carry their width as data-pct (the page's
// Content-Security-Policy allows no inline style).
function applyWidths(root) {
  $$("[data-pct]", root).forEach(el => { el.style.width = el.dataset.pct + "%"; });
}

// drawBar fills a bar with one segment per status, from counts.
function drawBar(bar, counts, hosts) {
  if (!bar || !hosts) return;
  bar.textContent = "";
  for (const st of ORDER) {
    const n = counts[st] || 0;
    if (!n) continue;
    const seg = document.createElement("span");
    seg.className = "seg st-" + st;
    seg.style.width = (100 * n / hosts) + "%";
    seg.title = st + ": " + n;
    bar.appendChild(seg);
  }
}

// follow opens one stream for the given batches and calls onProgress
// with each event.
function follow(ids, onProgress) {
  if (!ids.length || !window.EventSource) return;
  const q = ids.map(id => "batch=" + encodeURIComponent(id)).join("&");
  const es = new EventSource("/api/v1/events?" + q);
  es.addEventListener("progress", ev => {
    const p = JSON.parse(ev.data);
    onProgress(p);
    if (ids.length === 1 && p.state === "finished") es.close();
  });
  return es;
}

function setState(el, state) {
  if (!el) return;
  el.textContent = state;
  el.className = "state state-" + state;
}

function batchList() {
  const rows = $$("tr[data-batch]");
  rows.forEach(tr => {
    const bar = $("[data-field=bar]", tr);
    if (bar && bar.dataset.counts) drawBar(bar, JSON.parse(bar.dataset.counts), +tr.dataset.hosts);
  });
  const running = rows.filter(tr => tr.dataset.state === "running");
  const byId = new Map(running.map(tr => [tr.dataset.batch, tr]));
  follow([...byId.keys()], p => {
    const tr = byId.get(p.batch_id);
    if (!tr) return;
    drawBar($("[data-field=bar]", tr), p.counts, p.hosts);
    $("[data-field=done]", tr).textContent = p.done + "/" + p.hosts;
    setState($("[data-field=state]", tr), p.state);
    tr.dataset.state = p.state;
  });
}

function batchPage() {
  const root = $("#batch");
  if (!root) return;
  const id = root.dataset.batch, hosts = +root.dataset.hosts;
  const counts = {};
  $$("[data-count]", root).forEach(b => { counts[b.dataset.count] = +b.textContent; });
  drawBar($("[data-field=bar]", root), counts, hosts);
  if (root.dataset.state === "running") {
    follow([id], p => {
      drawBar($("[data-field=bar]", root), p.counts, p.hosts);
      for (const [st, n] of Object.entries(p.counts)) {
        const b = $('[data-count="' + st + '"]', root);
        if (b) b.textContent = n;
      }
      $("[data-field=done]", root).textContent = p.done;
      setState($("[data-field=state]", root), p.state);
      if (p.state !== root.dataset.state) {
        root.dataset.state = p.state;
        if (p.state === "finished") {
          $("[data-action=cancel]").hidden = true;
          $("[data-action=retry]").hidden = false;
          status("Batch finished. Reload for every host's result.", false);
        }
      }
    });
  }
  $$("[data-action]", root).forEach(btn => btn.addEventListener("click", () => act(id, btn.dataset.action)));
}

function status(text, isError) {
  const el = $("#action-status");
  if (!el) return;
  el.textContent = text;
  el.className = isError ? "error" : "";
}

// act sends a cancel or a retry, asking for a token first.
function act(id, action) {
  const what = action === "cancel" ? "Cancel batch " + id + "? Pending hosts end cancelled and running checks are aborted." :
    "Run batch " + id + "'s failed, errored and dead hosts again?";
  const body = action === "retry" ? {failed: true} : {};
  write("/api/v1/batches/" + encodeURIComponent(id) + "/" + action, body, what, () => act(id, action));
}

// write POSTs body as JSON with the tab's token, asking for one first
// (then again runs retry), and shows the answer; then calls done, if
// given, with it.
async function write(url, body, confirmText, retry, done) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    pendingAction = retry;
    openTokenDialog("This needs an operator token.");
    return;
  }
  if (confirmText && !confirm(confirmText)) return;
  try {
    const resp = await fetch(url, {
      method: "POST",
      headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
      body: JSON.stringify(body),
    });
    const v = await resp.json();
    if (!resp.ok) {
      status(v.error || ("HTTP " + resp.status), true);
      if (resp.status === 401) sessionStorage.removeItem(TOKEN_KEY);
      return;
    }
    status(v.message || "done", false);
    if (done) done(v);
  } catch (e) {
    status("request failed: " + e, true);
  }
}

// schedulePage wires a schedule's run now, pause and resume buttons.
function schedulePage() {
  const root = $("#schedule");
  if (!root) return;
  const name = root.dataset.schedule;
  const url = "/api/v1/schedules/" + encodeURIComponent(name) + "/";
  const run = action => {
    if (action === "trigger") {
      write(url + "trigger", {}, "Run schedule " + name + " now, outside its cadence?", () => run(action), v => {
        const a = document.createElement("a");
        a.href = "/batches/" + encodeURIComponent(v.batch_id);
        a.textContent = " Open " + v.batch_id;
        a.dataset.field = "triggered";
        $("#action-status").appendChild(a);
      });
    } else if (action === "pause") {
      if (!sessionStorage.getItem(TOKEN_KEY)) { write(url + "pause", {}, "", () => run(action)); return; }
      const note = prompt("Pause schedule " + name + "? No tick runs until it is resumed. Why (shown on this page)?", "");
      if (note === null) return;
      write(url + "pause", {note}, "", () => run(action), () => setPaused(root, true));
    } else if (action === "resume") {
      write(url + "resume", {}, "Resume schedule " + name + " from its next tick?", () => run(action), () => setPaused(root, false));
    }
  };
  $$("[data-action]", root).forEach(btn => btn.addEventListener("click", () => run(btn.dataset.action)));
}

function setPaused(root, paused) {
  root.dataset.paused = paused;
  setState($("[data-field=state]", root), paused ? "paused" : "active");
  $("[data-action=pause]", root).hidden = paused;
  $("[data-action=resume]", root).hidden = !paused;
}

let pendingAction = null;

function openTokenDialog(why) {
  const d = $("#token-dialog");
  $("#token-status").textContent = why || (sessionStorage.getItem(TOKEN_KEY) ? "A token is set for this tab." : "");
  $("#token-status").className = "";
  $("#token-input").value = "";
  d.showModal();
}

async function saveToken(token) {
  const resp = await fetch("/api/v1/whoami", {headers: {"Authorization": "Bearer " + token}});
  const v = await resp.json();
  if (!resp.ok) throw new Error(v.error || ("HTTP " + resp.status));
  if (!v.writes_enabled) throw new Error("this server takes no writes (no tokens file)");
  sessionStorage.setItem(TOKEN_KEY, token);
  return v;
}

function tokenDialog() {
  const d = $("#token-dialog");
  $("#token-button").addEventListener("click", () => openTokenDialog());
  $("#token-forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); pendingAction = null; });
  $("#token-save").addEventListener("click", async ev => {
    ev.preventDefault();
    const token = $("#token-input").value.trim();
    if (!token) return;
    try {
      const who = await saveToken(token);
      $("#token-status").textContent = "Token of " + who.name + " (" + who.role + ") in use.";
      d.close();
      const next = pendingAction;
      pendingAction = null;
      if (next) next();
    } catch (e) {
      $("#token-status").textContent = String(e.message || e);
      $("#token-status").className = "error";
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  applyWidths(document);
  tokenDialog();
  if (document.body.dataset.page === "batches") batchList();
  if (document.body.dataset.page === "batch") batchPage();
  if (document.body.dataset.page === "schedule") schedulePage();
});
