/// The dashboard at `/`: one page of plain HTML and a little JavaScript, served by the binary (no
/// build step, no CDN). It only calls the public API, with the API key the user types in (kept in
/// the tab's sessionStorage), so it can do nothing a client could not.
enum Dashboard {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>RecDB</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #1f2937; color: white; padding: 10px 20px; display: flex; gap: 20px; align-items: center; }
header a { color: #cbd5e1; text-decoration: none; } header a:hover { color: white; }
header h1 { font-size: 18px; margin: 0 20px 0 0; }
main { padding: 16px 20px; max-width: 1100px; }
section { background: white; border: 1px solid #e5e7eb; border-radius: 6px; padding: 12px 16px; margin-bottom: 16px; }
h2 { font-size: 16px; margin: 0 0 10px 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; }
th { color: #555; font-weight: 600; }
.stats { display: flex; flex-wrap: wrap; gap: 12px; }
.stat { background: #f3f4f6; border-radius: 4px; padding: 8px 12px; min-width: 110px; }
.stat b { display: block; font-size: 18px; }
.error { color: #b91c1c; white-space: pre-wrap; }
.curve svg { max-width: 100%; height: auto; }
button { cursor: pointer; } input { padding: 3px 6px; }
.muted { color: #777; font-size: 12px; }
</style>
</head>
<body>
<header>
  <h1>RecDB</h1>
  <a href="#/">Overview</a><a href="#/user/">Users</a><a href="#/item/">Items</a><a href="#/jobs">Jobs</a>
  <span style="flex:1"></span>
  <label class="muted" style="color:#cbd5e1">API key <input id="key" type="password" size="18"></label>
</header>
<main id="main"></main>
<script>
"use strict";
const main = document.getElementById("main");
const keyInput = document.getElementById("key");
keyInput.value = sessionStorage.getItem("recdb-key") || "";
keyInput.addEventListener("change", () => { sessionStorage.setItem("recdb-key", keyInput.value); route(); });

function esc(s) { return String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c])); }
function num(x, d) { return typeof x === "number" ? x.toFixed(d) : ""; }
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (keyInput.value) headers["Authorization"] = "Bearer " + keyInput.value;
  if (options.body && !headers["Content-Type"]) headers["Content-Type"] = "application/json";
  const response = await fetch(path, Object.assign({}, options, {headers}));
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error((body && body.detail) || (response.status + " " + response.statusText));
  return body;
}
function failure(e) { return `<p class="error">${esc(e.message)}</p>`; }

async function overview() {
  let html = "";
  try {
    const s = await api("/v1/stats");
    html += `<section><h2>Database</h2><div class="stats" id="stats">` +
      [["users", s.users], ["items", s.items], ["interactions", s.interactions], ["profiles", s.profiles],
       ["models", s.models], ["indexes", s.indexes], ["event version", s.event_version],
       ["file", (s.file_bytes / 1048576).toFixed(1) + " MiB"]]
        .map(([k, v]) => `<div class="stat"><b>${esc(v)}</b>${esc(k)}</div>`).join("") + `</div>`;
    if (s.spaces.length) html += `<h2 style="margin-top:12px">Embedding spaces</h2><table><tr><th>space</th><th>kind</th><th>dim</th><th>metric</th><th>vectors</th></tr>` +
      s.spaces.map(x => `<tr><td>${esc(x.name)}</td><td>${esc(x.kind)}</td><td>${x.dim}</td><td>${esc(x.metric)}</td><td>${x.count}</td></tr>`).join("") + `</table>`;
    html += `</section>`;
    const m = await api("/v1/models");
    html += `<section><h2>Models</h2>`;
    if (!m.models.length) html += `<p class="muted">No model yet: train one (Jobs) or with rdbctl train.</p>`;
    html += `<table id="models"><tr><th>model</th><th>version</th><th>architecture</th><th>items</th><th>epochs</th><th>test NDCG@10</th><th>test Recall@10</th><th>valid NDCG@10</th><th></th></tr>`;
    for (const model of m.models) {
      for (const v of model.versions.slice().reverse()) {
        const active = v.version === model.activeVersion;
        html += `<tr><td>${esc(model.name)}</td><td>${v.version}${active ? " <b>(active)</b>" : ""}</td><td>${esc(v.configuration.architecture)}</td>` +
          `<td>${esc(v.configuration.items)}</td><td>${v.report.epochsRun}</td><td class="metric">${num(v.report.test["ndcg@10"], 4)}</td>` +
          `<td class="metric">${num(v.report.test["recall@10"], 4)}</td><td class="metric">${num(v.report.valid["ndcg@10"], 4)}</td><td>` +
          (active ? `<button data-rollback="${esc(model.name)}">roll back</button>` : `<button data-activate="${esc(model.name)}" data-version="${v.version}">activate</button>`) +
          ` <button data-curve="${esc(model.name)}" data-version="${v.version}">curve</button></td></tr>`;
      }
    }
    html += `</table><div class="curve" id="curve"></div></section>`;
    main.innerHTML = html;
    const first = m.models.find(x => x.activeVersion);
    if (first) showCurve(first.name, first.activeVersion);
  } catch (e) { main.innerHTML = html + failure(e); }
}
async function showCurve(name, version) {
  const box = document.getElementById("curve");
  try { box.innerHTML = `<h2 style="margin-top:12px">Training curve of ${esc(name)} v${version}</h2>` + await api(`/v1/models/${encodeURIComponent(name)}/versions/${version}/curve.svg`); }
  catch (e) { box.innerHTML = failure(e); }
}
main.addEventListener("click", async (event) => {
  const b = event.target;
  try {
    if (b.dataset.activate) { await api(`/v1/models/${encodeURIComponent(b.dataset.activate)}/activate`, {method: "POST", body: JSON.stringify({version: Number(b.dataset.version)})}); overview(); }
    else if (b.dataset.rollback) { await api(`/v1/models/${encodeURIComponent(b.dataset.rollback)}/rollback`, {method: "POST", body: "{}"}); overview(); }
    else if (b.dataset.curve) { showCurve(b.dataset.curve, Number(b.dataset.version)); }
  } catch (e) { alert(e.message); }
});

function itemRows(items) {
  return `<table><tr><th>#</th><th>item</th><th>title</th><th>score</th></tr>` +
    items.map((x, i) => `<tr><td>${i + 1}</td><td><a href="#/item/${encodeURIComponent(x.item)}">${esc(x.item)}</a></td><td>${esc(x.title)}</td><td>${num(x.score, 4)}</td></tr>`).join("") + `</table>`;
}
function lookupForm(kind, id) {
  return `<section><form id="lookup"><label>${kind} id <input id="lookup-id" value="${esc(id)}"></label> <button>show</button></form></section>`;
}
function bindLookup(kind) {
  document.getElementById("lookup").addEventListener("submit", (e) => { e.preventDefault(); location.hash = `#/${kind}/` + encodeURIComponent(document.getElementById("lookup-id").value); });
}
async function userPage(id) {
  main.innerHTML = lookupForm("user", id); bindLookup("user");
  if (!id) return;
  let html = "";
  try {
    const u = await api(`/v1/users/${encodeURIComponent(id)}?history=20`);
    html += `<section><h2>User ${esc(u.id)}: ${u.events} events (latest first)</h2><table><tr><th>when</th><th>item</th><th>title</th><th>type</th></tr>` +
      u.history.slice().reverse().map(e => `<tr><td>${esc(e.timestamp)}</td><td><a href="#/item/${encodeURIComponent(e.item)}">${esc(e.item)}</a></td><td>${esc(e.title)}</td><td>${esc(e.type)}</td></tr>`).join("") + `</table></section>`;
    const r = await api(`/v1/users/${encodeURIComponent(id)}/recommendations?k=10`);
    html += `<section id="recommendations"><h2>Recommendations</h2><p class="muted">why: model ${esc(r.model)} v${r.version}, from ${esc(r.source)}; seen items excluded</p>` + itemRows(r.items) + `</section>`;
  } catch (e) { html += failure(e); }
  main.insertAdjacentHTML("beforeend", html);
}
async function itemPage(id) {
  main.innerHTML = lookupForm("item", id); bindLookup("item");
  if (!id) return;
  let html = "";
  try {
    const item = await api(`/v1/items/${encodeURIComponent(id)}`);
    html += `<section><h2>Item ${esc(item.id)}</h2><p>${esc(item.title)}</p><p class="muted">${item.available ? "available" : "unavailable"}; vectors in ${esc(item.spaces.join(", ") || "no space")}</p></section>`;
    for (const space of item.spaces) {
      try { const s = await api(`/v1/items/${encodeURIComponent(id)}/similar?k=10&space=${encodeURIComponent(space)}`);
            html += `<section><h2>Similar in ${esc(space)}</h2>` + itemRows(s.items) + `</section>`; }
      catch (e) { html += `<section><h2>Similar in ${esc(space)}</h2>${failure(e)}</section>`; }
    }
  } catch (e) { html += failure(e); }
  main.insertAdjacentHTML("beforeend", html);
}
let jobTimer = null;
async function jobsPage() {
  let html = `<section><h2>Train a model</h2><form id="train"><label>model <input id="train-model" value="sasrec"></label> ` +
    `<label>epochs <input id="train-epochs" type="number" value="200" min="1" style="width:70px"></label> <button>start</button></form></section>` +
    `<section><h2>Import a file</h2><form id="import"><label>kind <select id="import-kind"><option>interactions</option><option>items</option><option>users</option></select></label> ` +
    `<label>format <select id="import-format"><option>csv</option><option>tsv</option><option>jsonl</option><option>recbole</option><option>sequences</option></select></label> ` +
    `<input id="import-file" type="file"> <button>upload</button></form></section>`;
  try {
    const j = await api("/v1/jobs");
    const importDone = p => p.bytes_total ? Math.round(100 * p.bytes_done / p.bytes_total) + " %" : "";
    html += `<section><h2>Jobs</h2><table id="jobs"><tr><th>job</th><th>kind</th><th>model or table</th><th>state</th><th>progress</th><th>loss</th><th>valid NDCG@10</th><th>result</th></tr>` +
      j.jobs.map(x => x.kind === "import"
        ? `<tr><td>${x.id}</td><td>import</td><td>${esc(x.imports)}</td><td>${esc(x.state)}</td>` +
          `<td>${x.import_progress ? x.import_progress.rows + " rows, " + importDone(x.import_progress) : ""}</td><td></td><td></td>` +
          `<td>${x.import_result ? x.import_result.rows + " rows, " + x.import_result.events + " events" : esc(x.error)}</td></tr>`
        : `<tr><td>${x.id}</td><td>train</td><td>${esc(x.model)}</td><td>${esc(x.state)}</td><td>${x.progress ? "epoch " + x.progress.epoch + "/" + x.progress.max_epochs : ""}</td>` +
          `<td>${x.progress ? num(x.progress.loss, 4) : ""}</td><td>${x.progress ? num(x.progress.valid_ndcg10, 4) : ""}</td>` +
          `<td>${x.result ? "v" + x.result.version + ", test NDCG@10 " + num(x.result.test["ndcg@10"], 4) : esc(x.error)}</td></tr>`).join("") + `</table></section>`;
    main.innerHTML = html;
    if (j.jobs.some(x => x.state === "running")) jobTimer = setTimeout(jobsPage, 2000);
  } catch (e) { main.innerHTML = html + failure(e); }
  const form = document.getElementById("train");
  if (form) form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try { await api("/v1/train", {method: "POST", body: JSON.stringify({model: document.getElementById("train-model").value,
            configuration: {maxEpochs: Number(document.getElementById("train-epochs").value)}})}); jobsPage(); }
    catch (err) { alert(err.message); }
  });
  const upload = document.getElementById("import");
  if (upload) upload.addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = document.getElementById("import-file").files[0];
    if (!file) { alert("choose a file"); return; }
    const kind = document.getElementById("import-kind").value, format = document.getElementById("import-format").value;
    try { await api(`/v1/import/${kind}?format=${format}`, {method: "POST", body: file, headers: {"Content-Type": "application/octet-stream"}}); jobsPage(); }
    catch (err) { alert(err.message); }
  });
}
function route() {
  clearTimeout(jobTimer);
  const hash = location.hash || "#/";
  if (hash.startsWith("#/user/")) return userPage(decodeURIComponent(hash.slice(7)));
  if (hash.startsWith("#/item/")) return itemPage(decodeURIComponent(hash.slice(7)));
  if (hash === "#/jobs") return jobsPage();
  return overview();
}
window.addEventListener("hashchange", route);
route();
</script>
</body>
</html>
"""#
}
