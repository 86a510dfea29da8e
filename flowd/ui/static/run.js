// One run: the DAG (laid out by the server), statuses polled every second, an op's details and
// logs on click, matrix children as a sortable table, nested DAGs collapsed on a click on their title.
const runId = new URLSearchParams(location.search).get("id");
const COLORS = {
  succeeded: ["#d8f5d0", "#2f8a1f"], failed: ["#fbd5d5", "#c0392b"], upstream_failed: ["#fbe3d5", "#c0392b"],
  stopped: ["#fff1c2", "#b7950b"], stopping: ["#fff1c2", "#b7950b"], skipped: ["#eeeeee", "#999999"],
  running: ["#d5e8fb", "#1f6fb2"], retrying: ["#f0d5fb", "#8e44ad"], queued: ["#e8eefc", "#5a7bd8"],
  compiled: ["#f4f4f4", "#777777"], created: ["#ffffff", "#aaaaaa"],
};
// times in the browser's zone, named (as `flowd runs` gives its offset)
const ZONE = { timeZoneName: "short" };
const collapsed = new Set();
let selected = null, matrixOpen = null, sortKey = null, sortDir = 1, last = null, config = {}, drawn = "";
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function draw(data) {
  const svg = document.getElementById("dag");
  const { layout, graph } = data;
  const nodes = Object.fromEntries(graph.nodes.map(n => [n.path, n]));
  svg.setAttribute("width", layout.width); svg.setAttribute("height", layout.height);
  const defs = el("defs");
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#888" }));
  defs.append(marker);
  const items = [defs];
  // groups first (they are behind their ops), then plain nodes
  const boxes = [...layout.boxes].sort((a, b) => (b.expanded ? 1 : 0) - (a.expanded ? 1 : 0));
  for (const box of boxes) {
    const node = nodes[box.path];
    const [fill, stroke] = COLORS[node.status] || ["#ffffff", "#888888"];
    const g = el("g", { class: "node" + (box.expanded ? " group" : "") + (selected === box.path ? " selected" : ""),
                        "data-path": box.path, "data-status": node.status || "", "data-kind": node.kind });
    g.append(el("rect", { x: box.x, y: box.y, width: box.w, height: box.h, fill, stroke }));
    let label = node.name + (node.kind !== "job" ? ` (${node.kind}${node.kind === "matrix" ? ": " + node.children.length : ""})` : "");
    if (box.group && !box.expanded) label += " ▸";
    if (box.expanded) label += " ▾";
    g.append(el("text", { x: box.x + 8, y: box.y + 17, "font-weight": 600 }, label));
    if (!box.expanded) {
      const st = (node.status || "") + (node.attempts > 1 ? ` #${node.attempts}` : "");
      g.append(el("text", { x: box.x + 8, y: box.y + 35, class: "status-text" }, st));
    }
    g.addEventListener("click", ev => {
      ev.stopPropagation();
      if (box.group && node.kind !== "matrix") {
        collapsed.has(box.path) ? collapsed.delete(box.path) : collapsed.add(box.path);
        refresh();
      }
      select(box.path);
    });
    items.push(g);
  }
  for (const edge of layout.edges) {
    const d = edge.points.map((p, i) => (i ? "L" : "M") + p[0] + "," + p[1]).join(" ");
    items.push(el("path", { class: "edge", d, "data-from": edge.from, "data-to": edge.to }));
  }
  svg.replaceChildren(...items);
}

function fieldsOf(node) {
  const dl = document.getElementById("op-fields");
  const rows = [["kind", node.kind], ["status", node.status || "-"], ["attempts", node.attempts],
    ["message", node.message || "-"], ["params", JSON.stringify(node.params ?? {}, null, 1)],
    ["outputs", JSON.stringify(node.outputs ?? {}, null, 1)], ["metrics", JSON.stringify(node.metrics ?? {}, null, 1)],
    ["started", node.started_at ? new Date(node.started_at * 1000).toLocaleString(undefined, ZONE) : "-"],
    ["finished", node.finished_at ? new Date(node.finished_at * 1000).toLocaleString(undefined, ZONE) : "-"]];
  dl.replaceChildren(...rows.flatMap(([k, v]) => { const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = String(v); dd.dataset.field = k; return [dt, dd]; }));
}

function select(path) {
  const same = selected === path;
  selected = path; drawn = "";
  const node = last && last.graph.nodes.find(n => n.path === path);
  if (!node) return;
  if (node.kind === "matrix") { matrixOpen = path; renderMatrix(); }
  document.getElementById("details").hidden = false;
  document.getElementById("op-title").textContent = path;
  fieldsOf(node);
  renderOpActions(node);
  const attempts = (last.log_attempts[path] || []);
  const sel = document.getElementById("attempt");
  // the attempt picked stays while the same op is shown; another op opens on its latest
  const keep = same ? sel.value : null;
  sel.replaceChildren(...attempts.map(a => { const o = document.createElement("option"); o.value = a; o.textContent = "attempt " + a; return o; }));
  if (attempts.includes(Number(keep))) sel.value = keep; else if (attempts.length) sel.value = attempts[attempts.length - 1];
  loadLogs();
}

async function loadLogs() {
  if (!selected) return;
  const attempt = document.getElementById("attempt").value;
  const q = new URLSearchParams({ op: selected }); if (attempt) q.set("attempt", attempt);
  const resp = await fetch(`/api/runs/${encodeURIComponent(runId)}/logs?` + q);
  document.getElementById("logs").textContent = resp.ok ? (await resp.text()) || "(no output)" : "(no logs)";
}

function renderMatrix() {
  const section = document.getElementById("matrix");
  const matrix = last.graph.nodes.find(n => n.path === matrixOpen);
  if (!matrix) { section.hidden = true; return; }
  section.hidden = false;
  document.getElementById("matrix-title").textContent = `${matrix.path}: ${matrix.children.length} runs`;
  const children = last.graph.nodes.filter(n => n.parent === matrix.path);
  const paramKeys = [...new Set(children.flatMap(c => Object.keys(c.params || {})))].sort();
  const outKeys = [...new Set(children.flatMap(c => Object.keys(c.outputs || {})))].sort();
  // metrics: the last value of each intermediate metric a child reported ($FLOWD_METRICS)
  const metricKeys = [...new Set(children.flatMap(c => Object.keys(c.metrics || {})))].sort();
  const cols = [["run", c => c.name], ["status", c => c.status || ""], ["attempts", c => c.attempts],
    ...paramKeys.map(k => ["param " + k, c => (c.params || {})[k]]),
    ...metricKeys.map(k => ["metric " + k, c => (c.metrics || {})[k]]),
    ...outKeys.map(k => ["output " + k, c => (c.outputs || {})[k]])];
  const head = document.createElement("tr");
  cols.forEach(([name]) => { const th = document.createElement("th"); th.textContent = name + (sortKey === name ? (sortDir > 0 ? " ▲" : " ▼") : "");
    th.dataset.col = name;
    th.addEventListener("click", () => { sortDir = sortKey === name ? -sortDir : 1; sortKey = name; renderMatrix(); }); head.append(th); });
  document.querySelector("#matrix-table thead").replaceChildren(head);
  const getter = (cols.find(([n]) => n === sortKey) || [null, null])[1];
  const rows = [...children];
  // a child without the value (not reported yet) comes last in either direction
  const missing = v => v === undefined || v === null || v === "";
  if (getter) rows.sort((a, b) => { const x = getter(a), y = getter(b);
    if (missing(x) || missing(y)) return missing(x) - missing(y);
    return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true })) * sortDir; });
  document.querySelector("#matrix-table tbody").replaceChildren(...rows.map(c => { const tr = document.createElement("tr");
    tr.dataset.path = c.path;
    cols.forEach(([name, get]) => { const td = document.createElement("td"); const v = get(c);
      td.textContent = v === undefined || v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
      if (name === "status") td.className = "status s-" + v; tr.append(td); });
    tr.addEventListener("click", () => select(c.path)); return tr; }));
}

function renderActions(run) {
  const box = document.getElementById("actions");
  if (!config.actions) { box.replaceChildren(); return; }
  const buttons = [];
  const add = (name, enabled) => { const b = document.createElement("button"); b.textContent = name; b.id = "action-" + name;
    b.disabled = !enabled; b.addEventListener("click", () => act(name)); buttons.push(b); };
  add("stop", run.active); add("resume", !run.active && ["failed", "stopped"].includes(run.status));
  box.replaceChildren(...buttons);
}

// approve: only where the backend takes approvals while a run goes (the daemon's), and only for
// an op that waits for one
function renderOpActions(node) {
  const box = document.getElementById("op-actions");
  if (!config.actions || !config.approve || node.message !== "waiting for approval") { box.replaceChildren(); return; }
  if (box.firstChild && box.firstChild.dataset.path === node.path) return;
  const b = document.createElement("button"); b.textContent = "approve"; b.id = "action-approve"; b.dataset.path = node.path;
  b.addEventListener("click", () => act("approve", { op: node.path }));
  box.replaceChildren(b);
}

async function act(name, body) {
  let token = sessionStorage.getItem("flowd-token") || prompt("token");
  if (!token) return;
  const headers = { Authorization: "Bearer " + token };
  if (body) headers["Content-Type"] = "application/json";
  const resp = await fetch(`/api/runs/${encodeURIComponent(runId)}/${name}`,
                           { method: "POST", headers, body: body ? JSON.stringify(body) : undefined });
  const data = await resp.json();
  if (resp.status === 401) sessionStorage.removeItem("flowd-token"); else sessionStorage.setItem("flowd-token", token);
  document.getElementById("error").textContent = data.message || data.error || "";
  refresh();
}

async function refresh() {
  const q = new URLSearchParams(); if (collapsed.size) q.set("collapsed", [...collapsed].join(","));
  const resp = await fetch(`/api/runs/${encodeURIComponent(runId)}?` + q);
  if (!resp.ok) { document.getElementById("error").textContent = "no such run: " + runId; return; }
  last = await resp.json();
  const run = last.run;
  document.getElementById("pipeline").textContent = run.pipeline;
  const status = document.getElementById("status");
  status.textContent = run.status + (run.active ? " (live)" : ""); status.className = "badge s-" + run.status;
  document.getElementById("run-id").textContent = run.run_id;
  document.getElementById("times").textContent = run.created_at ? "created " + new Date(run.created_at).toLocaleString(undefined, ZONE) : "";
  document.getElementById("message").textContent = run.message || "";
  // redraw only what changed: a steady page keeps its elements (and a user's click target)
  const sig = JSON.stringify([last.layout, last.graph.nodes.map(n => [n.status, n.attempts, n.outputs, n.metrics]), selected, run.active]);
  const changed = sig !== drawn;
  if (changed) {
    drawn = sig;
    draw(last);
    renderActions(run);
    if (matrixOpen) renderMatrix();
  }
  if (selected) { const node = last.graph.nodes.find(n => n.path === selected); if (node) { fieldsOf(node); renderOpActions(node); } }
  // while the run goes, and once more on the change that ends it (an op that ran between two
  // polls has its output only now)
  if (selected && (run.active || changed)) loadLogs();
}

document.getElementById("attempt").addEventListener("change", loadLogs);
fetch("/api/config").then(r => r.json()).then(c => { config = c; document.getElementById("where").textContent = `${c.source}: ${c.where}`; refresh(); });
setInterval(refresh, 1000);
