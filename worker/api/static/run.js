// A run: its DAG coloured by state and kept live, a timeline, costs, events, the step
// panel, approvals waiting on it, and the actions (cancel, retry, signal, decide).
import { api, badge, duration, el, header, notice, poll, replace, usd, when } from "./common.js";

header("runs");
const $ = (id) => document.getElementById(id);
const runId = decodeURIComponent(location.pathname.split("/").pop());
const base = `/v1/runs/${encodeURIComponent(runId)}`;
const COLORS = { pending: "#c9cfda", queued: "#9aa5b8", running: "#3b82f6", waiting: "#f59e0b",
  retrying: "#f97316", succeeded: "#16a34a", failed: "#dc2626", cancelled: "#6b7280" };
const ENDED = new Set(["succeeded", "failed", "cancelled"]);
let edges = null;
let since = null;
let selected = null;
let shownStep = null;
let lastRun = null;

$("run-id").textContent = runId;

async function act(question, work, done) {
  if (!confirm(question)) return;
  try { const result = await work(); notice(done(result)); await refresh(); }
  catch (error) { notice(error.message, "error"); }
}

$("cancel").addEventListener("click", () => act("Cancel this run? Running steps stop at their next beat.",
  () => api(`${base}/cancel`, { method: "POST", body: { reason: "cancelled from the dashboard" } }),
  (r) => (r.cancelled ? "cancelled" : "the run had already ended")));
$("retry").addEventListener("click", () => act("Retry this run from the steps that did not succeed?",
  () => api(`${base}/retry`, { method: "POST" }), (r) => `retrying: ${r.queued} step(s) queued`));
$("signal").addEventListener("click", () => {
  const name = $("signal-name").value.trim();
  let payload = null;
  try { payload = $("signal-payload").value.trim() ? JSON.parse($("signal-payload").value) : null; }
  catch { notice("the payload is not JSON", "error"); return; }
  act(`Send signal "${name}" to this run?`,
    () => api(`${base}/signals`, { method: "POST", body: { name, payload } }), () => `signal "${name}" sent`);
});

// A map's elements have no edges of their own: they are drawn between the map step's
// upstream and the map step, as one column (a grid when wide).
function withElements(steps) {
  const all = [...edges];
  for (const s of steps) {
    if (!s.map_of) continue;
    for (const [up, down] of edges) if (down === s.map_of) all.push([up, s.key]);
    all.push([s.key, s.map_of]);
  }
  return all;
}

function layout(steps, edges) {
  const after = new Map(steps.map((s) => [s.key, []]));
  for (const [up, down] of edges) after.get(down)?.push(up);
  const depth = new Map();
  const visit = (key) => {
    if (depth.has(key)) return depth.get(key);
    depth.set(key, 0);
    const d = Math.max(-1, ...after.get(key).map(visit)) + 1;
    depth.set(key, d);
    return d;
  };
  steps.forEach((s) => visit(s.key));
  const columns = [];
  for (const s of steps) (columns[depth.get(s.key)] ||= []).push(s);
  return columns;
}

function drawDag(steps) {
  const edges = withElements(steps);
  const columns = layout(steps, edges);
  const W = 150, H = 30, GAP_X = 60, GAP_Y = 12, SMALL = 14, PAD = 3;
  const pos = new Map();
  const compactBox = new Map(); // column -> bounding box of its grid of squares
  let height = 0;
  let x = 10;
  columns.forEach((column, c) => {
    const compact = column.length > 12; // a wide fan-out: a square grid of small squares
    const perRow = compact ? Math.max(Math.ceil(Math.sqrt(column.length * 1.5)), 8) : 1;
    const width = compact ? perRow * (SMALL + PAD) : W;
    column.forEach((s, i) => {
      const p = compact
        ? { x: x + (i % perRow) * (SMALL + PAD), y: 10 + Math.floor(i / perRow) * (SMALL + PAD), w: SMALL, h: SMALL, compact }
        : { x, y: 10 + i * (H + GAP_Y), w: W, h: H, compact };
      pos.set(s.key, p);
      height = Math.max(height, p.y + p.h + 10);
    });
    if (compact) compactBox.set(c, { x, y: 10, w: width, h: Math.ceil(column.length / perRow) * (SMALL + PAD) });
    x += width + GAP_X;
  });
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", x); svg.setAttribute("height", height);
  const make = (tag, attrs) => { const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); return n; };
  // An edge touching a grid is drawn once, from or to the grid's box, not once per square.
  const drawn = new Set();
  const depthOf = new Map(); columns.forEach((col, c) => col.forEach((s) => depthOf.set(s.key, c)));
  for (const [up, down] of edges) {
    let a = pos.get(up), b = pos.get(down);
    if (!a || !b) continue;
    if (a.compact) a = compactBox.get(depthOf.get(up));
    if (b.compact) b = compactBox.get(depthOf.get(down));
    const id = `${a.x},${a.y},${b.x},${b.y}`;
    if (drawn.has(id)) continue;
    drawn.add(id);
    svg.append(make("path", { d: `M${a.x + a.w},${a.y + a.h / 2} C${a.x + a.w + 30},${a.y + a.h / 2} ${b.x - 30},${b.y + b.h / 2} ${b.x},${b.y + b.h / 2}`,
      fill: "none", stroke: "#b6bdca", "stroke-width": 1 }));
  }
  for (const s of steps) {
    const p = pos.get(s.key);
    const g = make("g", { class: "node", "data-step": s.key, "data-status": s.status });
    g.addEventListener("click", () => openStep(s.key));
    g.append(make("rect", { x: p.x, y: p.y, width: p.w, height: p.h, rx: p.compact ? 2 : 5, fill: COLORS[s.status] || "#999" }));
    const title = make("title", {});
    title.textContent = `${s.key}: ${s.status} (attempt ${s.attempt})${s.reused_from ? ", reused from the run it was forked from" : ""}`;
    g.append(title);
    if (!p.compact) {
      const t = make("text", { x: p.x + 8, y: p.y + 19, fill: s.status === "pending" ? "#1d2330" : "#fff" });
      t.textContent = s.key.length > 18 ? `${s.key.slice(0, 17)}…` : s.key;
      g.append(t);
    }
    svg.append(g);
  }
  replace($("dag"), svg);
}

const OUTCOME = { complete_step: "#16a34a", fail_step: "#dc2626", release_step: "#f97316",
  wait_step: "#f59e0b", cancel_step: "#6b7280", reap_step: "#a855f7" };
const allEvents = [];

function attemptsOf() {
  // (step, attempt) -> {start, end, outcome}, from the run's event log
  const found = new Map();
  for (const e of allEvents) {
    if (!e.step_key || !e.attempt) continue;
    const id = `${e.step_key}#${e.attempt}`;
    if (e.kind === "claim_step") found.set(id, { key: e.step_key, attempt: e.attempt, start: new Date(e.at), end: null, outcome: null });
    else if (OUTCOME[e.kind] && found.has(id) && !found.get(id).outcome) Object.assign(found.get(id), { end: new Date(e.at), outcome: e.kind });
  }
  return [...found.values()];
}

function drawTimeline(steps) {
  const attempts = attemptsOf();
  if (!attempts.length) { replace($("timeline"), el("p", { class: "muted" }, "no step has started")); return; }
  const now = new Date();
  const t0 = Math.min(...attempts.map((a) => a.start));
  const t1 = Math.max(...attempts.map((a) => a.end || now));
  const span = Math.max(t1 - t0, 1);
  const byStep = new Map();
  for (const a of attempts) (byStep.get(a.key) || byStep.set(a.key, []).get(a.key)).push(a);
  // In the order they first started (a map's elements come between their neighbours).
  const first = (s) => Math.min(...byStep.get(s.key).map((a) => a.start));
  const shown = steps.filter((s) => byStep.has(s.key)).sort((a, b) => first(a) - first(b));
  const rows = shown.slice(0, 100).map((s) => {
    const bars = byStep.get(s.key).map((a) => el("div", { class: "bar", "data-attempt": `${s.key}#${a.attempt}`,
      title: `attempt ${a.attempt}: ${a.outcome || "running"} · ${duration(a.start.toISOString(), a.end && a.end.toISOString())}`,
      style: `position:absolute;left:${((a.start - t0) / span) * 100}%;width:${Math.max((((a.end || now) - a.start) / span) * 100, 0.5)}%;background:${OUTCOME[a.outcome] || COLORS.running}` }));
    return el("tr", {}, el("td", { class: "mono", style: "width:30%" }, s.key),
      el("td", {}, el("div", { style: "position:relative;height:14px" }, bars)),
      el("td", { class: "muted", style: "width:80px" }, `${byStep.get(s.key).length} attempt(s)`));
  });
  replace($("timeline"), el("table", {}, rows),
    shown.length > 100 ? el("p", { class: "muted" }, `and ${shown.length - 100} more steps (click one in the graph)`) : null);
}

let shownApprovals = null;
async function drawApprovals() {
  const pending = await api(`/v1/approvals?run_id=${encodeURIComponent(runId)}`);
  const ids = pending.map((a) => a.id).join(",");
  if (ids === shownApprovals) return; // keep what a person is typing
  shownApprovals = ids;
  replace($("approvals"), pending.map((a) => {
    const budget = a.kind === "budget";
    const amount = el("input", { placeholder: "new budget USD", size: 14, "data-budget": a.id });
    const comment = el("input", { placeholder: "comment", size: 24 });
    const decide = (approve) => act(`${approve ? "Approve" : "Reject"} "${a.title}"?`,
      () => api(`/v1/approvals/${a.id}/${approve ? "approve" : "reject"}`, { method: "POST",
        body: { comment: comment.value || null, ...(approve && budget ? { budget_usd: amount.value } : {}) } }),
      (r) => `${r.status} by ${r.decided_by}`);
    return el("div", { class: "notice warn", "data-approval": a.id },
      el("strong", {}, a.title), " ", el("span", { class: "muted" }, `asked by ${a.requested_by}`,
        a.group ? `, group ${a.group}` : "", a.expires_at ? `, expires ${when(a.expires_at)}` : ""),
      a.details ? el("div", { class: "mono muted" }, JSON.stringify(a.details)) : null,
      el("div", { class: "toolbar", style: "margin:8px 0 0" }, budget ? amount : null, comment,
        el("button", { class: "ok", onclick: () => decide(true) }, budget ? "Raise the budget" : "Approve"),
        el("button", { class: "danger", onclick: () => decide(false) }, "Reject")));
  }));
}

async function drawCosts() {
  const costs = await api(`${base}/costs`);
  const max = Math.max(...costs.steps.map((s) => Number(s.usd)), 0.000001);
  replace($("costs"), el("p", {}, "total ", el("strong", { "data-total": costs.total_usd }, usd(costs.total_usd))),
    costs.steps.length ? el("table", {}, el("tr", {}, el("th", {}, "step"), el("th", {}, "spent"), el("th", {}, "tokens in/out")),
      costs.steps.map((s) => el("tr", {}, el("td", { class: "mono" }, s.key),
        el("td", {}, el("span", { class: "bar", style: `width:${(Number(s.usd) / max) * 120}px` }), " ", usd(s.usd)),
        el("td", {}, `${s.input_tokens} / ${s.output_tokens}`)))) : el("p", { class: "muted" }, "nothing spent"),
    costs.by_model.length ? el("table", {}, el("tr", {}, el("th", {}, "model"), el("th", {}, "spent"), el("th", {}, "records")),
      costs.by_model.map((m) => el("tr", {}, el("td", {}, `${m.provider} / ${m.model}`), el("td", {}, usd(m.usd)), el("td", {}, m.records)))) : null);
}

async function drawArtifacts() {
  const artifacts = await api(`${base}/artifacts`);
  replace($("artifacts"), artifacts.length ? el("table", {}, artifacts.map((a) => el("tr", {},
    el("td", { class: "mono" }, a.name), el("td", { class: "muted" }, a.step_key), el("td", {}, `${a.size} B`),
    el("td", {}, el("a", { href: `${base}/artifacts/${encodeURI(a.name)}/content?step=${encodeURIComponent(a.step_key)}`,
      download: a.name.split("/").pop(), "data-artifact": a.name }, "download"))))) : el("p", { class: "muted" }, "none"));
}

async function drawEvents() {
  const page = await api(`${base}/events${since ? `?since=${since}` : ""}`);
  if (page.next_since) since = page.next_since;
  for (const e of page.events) {
    allEvents.push(e);
    $("events").append(el("div", { class: "mono" }, el("span", { class: "muted" }, new Date(e.at).toLocaleTimeString()), " ",
      el("strong", {}, e.kind), e.step_key ? ` ${e.step_key}` : "", e.attempt ? ` #${e.attempt}` : "",
      e.data ? el("span", { class: "muted" }, ` ${JSON.stringify(e.data).slice(0, 160)}`) : null));
  }
  if (page.events.length) $("events").scrollTop = $("events").scrollHeight;
}

function preview(name, url) {
  const box = el("div", {});
  const lower = name.toLowerCase();
  if (/\.(png|jpe?g|gif|webp|svg)$/.test(lower)) box.append(el("img", { src: url, style: "max-width:100%" }));
  else if (/\.(txt|md|json|csv|log|yaml|yml)$/.test(lower)) {
    fetch(url).then((r) => r.text()).then((text) => {
      let shown = text.slice(0, 20000);
      if (lower.endsWith(".json")) { try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch {} }
      box.append(el("pre", { "data-preview": name }, shown));
    });
  }
  return box;
}

async function openStep(key) {
  selected = key;
  const d = await api(`${base}/steps/${encodeURIComponent(key)}`);
  const s = d.step;
  const panel = $("step-panel");
  replace(panel, el("h2", {}, "Step ", el("span", { class: "mono" }, s.key), " ", badge(s.status)),
    el("p", { class: "muted" }, `${s.task} · attempt ${s.attempt} of ${s.max_attempts} · `,
      s.started_at ? `started ${when(s.started_at)} · ${duration(s.started_at, s.finished_at)}` : "not started"),
    el("h2", {}, "Attempts"),
    el("table", { "data-attempts": "" }, el("tr", {}, el("th", {}, "#"), el("th", {}, "started"), el("th", {}, "took"), el("th", {}, "ended by")),
      d.attempts.map((a) => el("tr", {}, el("td", {}, a.attempt), el("td", {}, when(a.started_at)),
        el("td", {}, duration(a.started_at, a.ended_at)), el("td", {}, a.outcome || "running")))),
    el("h2", {}, "Inputs"), el("pre", { "data-inputs": "" }, JSON.stringify(d.inputs, null, 2)),
    s.error ? [el("h2", {}, "Error"), el("pre", { "data-error": "" }, `${s.error.type}: ${s.error.message}\n\n${s.error.traceback || ""}`)] : null,
    s.output ? [el("h2", {}, "Output"), el("pre", {}, JSON.stringify(s.output, null, 2))] : null,
    el("h2", {}, `Messages (${d.messages.length})`),
    d.messages.length ? el("div", { "data-messages": "" }, d.messages.map((m) => el("div", { class: `msg ${m.role}` },
      el("strong", {}, m.role), el("span", { class: "muted" }, ` #${m.attempt}.${m.seq}`), "\n", m.content)))
      : el("p", { class: "muted" }, "none"),
    el("h2", {}, `Costs (${d.costs.length})`),
    d.costs.length ? el("table", { "data-costs": "" }, el("tr", {}, el("th", {}, "attempt"), el("th", {}, "model"), el("th", {}, "tokens"), el("th", {}, "usd")),
      d.costs.map((c) => el("tr", {}, el("td", {}, c.attempt), el("td", {}, `${c.provider} / ${c.model}`),
        el("td", {}, `${c.input_tokens} / ${c.output_tokens}`), el("td", {}, usd(c.usd))))) : el("p", { class: "muted" }, "none"),
    el("h2", {}, `Checkpoints (${d.checkpoints.length})`),
    d.checkpoints.length ? el("table", {}, el("tr", {}, el("th", {}, "seq"), el("th", {}, "attempt"), el("th", {}, "size"), el("th", {}, "at")),
      d.checkpoints.map((c) => el("tr", {}, el("td", {}, c.seq), el("td", {}, c.attempt),
        el("td", {}, c.size !== null ? `${c.size} B (stored)` : `${JSON.stringify(c.state).length} B`), el("td", {}, when(c.at))))) : el("p", { class: "muted" }, "none"),
    el("h2", {}, `Artifacts (${d.artifacts.length})`),
    d.artifacts.map((name) => {
      const url = `${base}/artifacts/${encodeURI(name)}/content?step=${encodeURIComponent(s.key)}`;
      return el("div", {}, el("a", { href: url, download: name.split("/").pop() }, name), preview(name, url));
    }));
}

async function refresh() {
  const run = await api(base);
  lastRun = run;
  if (!edges) edges = (await api(`${base}/graph`)).edges;
  document.title = `cairn · run ${run.status}`;
  replace($("run-status"), badge(run.status));
  const done = run.steps.filter((s) => s.status === "succeeded").length;
  $("summary").textContent = `${done}/${run.steps.length} steps succeeded · started ${when(run.created_at)} · ${duration(run.created_at, run.finished_at)} · ${usd(run.cost_usd)}${run.budget_usd ? ` of ${usd(run.budget_usd)} budget` : ""}`;
  const link = (id, text) => el("a", { href: `/ui/runs/${id}` }, text || id);
  replace($("lineage"),
    run.parent_step ? ["child run of ", link(run.parent_run_id), ` (its step ${run.parent_step})`]
      : run.parent_run_id ? ["forked from ", link(run.parent_run_id)] : null,
    run.children.length ? [" children: ", ...run.children.flatMap((c, i) =>
      [i ? ", " : "", link(c.run_id, `${c.key} (${c.workflow}, ${c.status})`)])] : null);
  if (run.paused) notice(`Paused: ${run.paused.message}. Raise the budget below to go on.`, "warn");
  else if (run.error) notice(`${run.error.type || run.error.reason}: ${run.error.message}`, "error");
  $("cancel").disabled = ENDED.has(run.status);
  $("retry").disabled = !["failed", "cancelled"].includes(run.status);
  drawDag(run.steps);
  await drawEvents();
  drawTimeline(run.steps);
  replace($("io"), el("h2", {}, "inputs"), el("pre", {}, JSON.stringify(run.inputs, null, 2)),
    run.outputs ? [el("h2", {}, "outputs"), el("pre", { "data-outputs": "" }, JSON.stringify(run.outputs, null, 2))] : null);
  await Promise.all([drawApprovals(), drawCosts(), drawArtifacts()]);
  const current = run.steps.find((s) => s.key === selected);
  const seen = current ? `${current.status}:${current.attempt}` : null;
  if (selected && seen !== shownStep) { shownStep = seen; await openStep(selected); }
}

poll(refresh, () => (lastRun && ENDED.has(lastRun.status) ? 5000 : 1000));
