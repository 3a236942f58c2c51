// The overview: recent runs by status, spend per model and against the limits, pending
// approvals, workers with their heartbeats, schedules with their next fire times.
import { api, badge, el, header, notice, poll, replace, usd, when } from "./common.js";

header("overview");
const $ = (id) => document.getElementById(id);
const table = (head, rows) => el("table", {}, el("tr", {}, head.map((h) => el("th", {}, h))), rows);

async function load() {
  try {
    const [runs, costs, limits, approvals, workers, schedules, activity] = await Promise.all([
      api("/v1/runs?limit=500"), api("/v1/costs"), api("/v1/limits"), api("/v1/approvals"),
      api("/v1/workers"), api("/v1/schedules"), api("/v1/activity?days=14")]);
    drawActivity(activity);
    const counts = {};
    for (const r of runs.runs) counts[r.status] = (counts[r.status] || 0) + 1;
    const most = Math.max(1, ...Object.values(counts));
    replace($("statuses"), el("p", { class: "muted" }, `the last ${runs.runs.length} runs`),
      table(["status", "runs"], Object.entries(counts).map(([status, n]) => el("tr", {}, el("td", {}, badge(status)),
        el("td", {}, el("span", { class: "bar", style: `width:${(n / most) * 160}px` }), ` ${n}`)))));
    replace($("spend"), costs.by_model.length ? table(["model", "spent", "tokens in/out"], costs.by_model.map((m) =>
      el("tr", {}, el("td", {}, `${m.provider} / ${m.model}`), el("td", {}, usd(m.usd)), el("td", {}, `${m.input_tokens} / ${m.output_tokens}`))))
      : el("p", { class: "muted" }, "nothing spent yet"));
    const limit = (value) => (value === null ? "no limit" : usd(value));
    replace($("limits"), table(["", "spent", "limit"], [
      el("tr", {}, el("td", {}, "today (UTC)"), el("td", {}, usd(limits.spent_today_usd)), el("td", {}, limit(limits.daily_limit_usd))),
      el("tr", {}, el("td", {}, "this month"), el("td", {}, usd(limits.spent_this_month_usd)), el("td", {}, limit(limits.monthly_limit_usd)))]));
    replace($("approvals"), approvals.length ? table(["request", "run"], approvals.map((a) => el("tr", {},
      el("td", {}, a.title, el("div", { class: "muted" }, `asked by ${a.requested_by}`)),
      el("td", {}, el("a", { href: `/ui/runs/${a.run_id}`, class: "mono" }, a.run_id.slice(0, 13)))))) : el("p", { class: "muted" }, "none"));
    replace($("workers"), workers.length ? table(["worker", "status", "last heartbeat"], workers.map((w) => el("tr", {},
      el("td", { class: "mono" }, w.name), el("td", {}, w.status), el("td", {}, when(w.heartbeat_at))))) : el("p", { class: "muted" }, "none registered"));
    replace($("schedules"), schedules.length ? table(["schedule", "cron", "status", "next"], schedules.map((s) => el("tr", {},
      el("td", {}, `${s.name} → ${s.workflow}`), el("td", { class: "mono" }, s.cron), el("td", {}, s.status), el("td", {}, when(s.next_fire_at)))))
      : el("p", { class: "muted" }, "none"));
    notice("");
  } catch (error) { notice(error.message, "error"); }
}
const COLORS = { queued: "#9aa5b8", running: "#3b82f6", paused: "#a855f7", succeeded: "#16a34a",
  failed: "#dc2626", cancelled: "#6b7280" };

function drawActivity(activity) {
  const days = new Map();
  for (const row of activity.runs_by_day) {
    const day = days.get(row.day) || days.set(row.day, {}).get(row.day);
    day[row.status] = row.runs;
  }
  const most = Math.max(1, ...[...days.values()].map((d) => Object.values(d).reduce((a, b) => a + b, 0)));
  replace($("runs-by-day"), days.size ? table(["day", "runs"], [...days.entries()].map(([day, counts]) =>
    el("tr", { "data-day": day }, el("td", { class: "mono" }, day), el("td", {}, Object.entries(counts).map(([status, n]) =>
      el("span", { class: "bar", title: `${n} ${status}`, style: `width:${(n / most) * 200}px;background:${COLORS[status] || "#999"};border-radius:0` })),
      ` ${Object.values(counts).reduce((a, b) => a + b, 0)}`)))) : el("p", { class: "muted" }, "no runs"));
  const top = Math.max(0.000001, ...activity.spend_by_day.map((d) => Number(d.usd)));
  replace($("spend-by-day"), activity.spend_by_day.length ? table(["day", "spent"], activity.spend_by_day.map((d) =>
    el("tr", {}, el("td", { class: "mono" }, d.day), el("td", {}, el("span", { class: "bar", style: `width:${(Number(d.usd) / top) * 200}px` }), ` ${usd(d.usd)}`))))
    : el("p", { class: "muted" }, "nothing spent"));
}

poll(load, 5000);
