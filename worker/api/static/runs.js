// The runs list: filters, server-side pages (cursor), refreshed every 2 s without reloading
// (while the tab is visible).
import { api, badge, duration, el, header, notice, poll, replace, usd, when } from "./common.js";

header("runs");
const $ = (id) => document.getElementById(id);
const cursors = [null]; // the cursor of each page shown so far; the last is the current one
let next = null;
let failed = false;

function query() {
  const params = new URLSearchParams({ limit: "50" });
  if ($("status").value) params.set("status", $("status").value);
  if ($("workflow").value.trim()) params.set("workflow", $("workflow").value.trim());
  if ($("since").value) params.set("since", new Date(Date.now() - 1000 * $("since").value).toISOString());
  const cursor = cursors[cursors.length - 1];
  if (cursor) params.set("cursor", cursor);
  return params;
}

async function load() {
  try {
    const page = await api(`/v1/runs?${query()}`);
    next = page.next_cursor;
    replace($("rows"), page.runs.map((run) => el("tr", { class: "link", "data-run": run.id,
      onclick: () => (location.href = `/ui/runs/${run.id}`) },
      el("td", { class: "mono" }, run.id), el("td", {}, badge(run.status)),
      el("td", {}, `${run.workflow} v${run.version}`), el("td", {}, when(run.created_at)),
      el("td", {}, duration(run.created_at, run.finished_at)), el("td", {}, usd(run.cost_usd)),
      el("td", {}, el("span", { class: "bar", style: `width:${(run.steps_succeeded / Math.max(run.steps_total, 1)) * 60}px;background:#16a34a` }),
        ` ${run.steps_succeeded}/${run.steps_total}`))));
    if (!page.runs.length) replace($("rows"), el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no runs")));
    $("older").disabled = !next;
    $("newer").disabled = cursors.length < 2;
    if (failed) notice(""); // clear only what a failed refresh said
    failed = false;
  } catch (error) { failed = true; notice(`cannot read the runs: ${error.message}`, "error"); }
}

function restart() { cursors.splice(0, cursors.length, null); load(); }
for (const id of ["status", "since"]) $(id).addEventListener("change", restart);
$("workflow").addEventListener("change", restart);
$("older").addEventListener("click", () => { cursors.push(next); load(); });
$("newer").addEventListener("click", () => { cursors.pop(); load(); });
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
$("find").addEventListener("keydown", async (event) => {
  const text = $("find").value.trim();
  if (event.key !== "Enter" || !text) return;
  if (UUID.test(text)) { location.href = `/ui/runs/${text}`; return; }
  const found = await api(`/v1/runs?${new URLSearchParams({ idempotency_key: text, limit: "1" })}`);
  if (found.runs.length) location.href = `/ui/runs/${found.runs[0].id}`;
  else notice(`no run has the id or idempotency key "${text}"`, "warn");
});
poll(load, 2000);
