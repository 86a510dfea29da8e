// The runs list: filters in the URL query, refreshed every 2 seconds.
const form = document.getElementById("filters");
const params = new URLSearchParams(location.search);
for (const el of form.elements) if (params.get(el.name)) el.value = params.get(el.name);

// times in the browser's zone, named (as `flowd runs` gives its offset)
const ZONE = { timeZoneName: "short" };
function fmtTime(iso) { return iso ? new Date(iso).toLocaleString(undefined, ZONE) : "-"; }
function took(r) {
  if (!r.started_at) return "-";
  if (!r.finished_at) return r.active ? "…" : "-";
  return ((new Date(r.finished_at) - new Date(r.started_at)) / 1000).toFixed(1) + "s";
}

async function load() {
  const q = new URLSearchParams();
  for (const el of form.elements) if (el.value) q.set(el.name, el.value);
  history.replaceState(null, "", q.toString() ? "?" + q : "/");
  const resp = await fetch("/api/runs?" + q);
  const data = await resp.json();
  document.getElementById("error").textContent = resp.ok ? "" : data.error;
  if (!resp.ok) return;
  const body = document.querySelector("#runs tbody");
  body.replaceChildren(...data.runs.map(r => {
    const tr = document.createElement("tr");
    tr.className = "run";
    tr.dataset.runId = r.run_id;
    const ops = Object.entries(r.counts).map(([s, n]) => `${n} ${s}`).join(", ");
    const cells = [r.run_id, r.status + (r.active ? " (live)" : ""), r.pipeline, fmtTime(r.created_at), took(r), ops];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      if (i === 0) { const a = document.createElement("a"); a.href = "/run?id=" + encodeURIComponent(r.run_id); a.textContent = text; td.append(a); }
      else td.textContent = text;
      if (i === 1) td.className = "status s-" + r.status;
      tr.append(td);
    });
    return tr;
  }));
}

fetch("/api/config").then(r => r.json()).then(c => { document.getElementById("where").textContent = `${c.source}: ${c.where}`; });
form.addEventListener("input", load);
form.addEventListener("submit", e => { e.preventDefault(); load(); });
load();
setInterval(load, 2000);
