// Shared helpers of the dashboard pages: the API wrapper, DOM building, formatting.
export async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options, headers: { ...(options.headers || {}) } };
  if (init.body !== undefined && typeof init.body !== "string") {
    init.body = JSON.stringify(init.body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (response.status === 401) { location.href = "/ui/login"; throw new Error("not logged in"); }
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = (body && body.error) || { message: response.statusText };
    throw new Error(error.message + (error.field ? ` (${error.field})` : ""));
  }
  return body;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const badge = (status) => el("span", { class: `badge s-${status}`, "data-status": status }, status);
export const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
export function duration(start, end) {
  if (!start) return "";
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}
export const usd = (value) => `$${Number(value || 0).toFixed(4).replace(/\.?0+$/, "") || "0"}`;
export function replace(node, ...children) {
  node.replaceChildren(...children.flat(2).filter((c) => c !== null && c !== undefined && c !== false));
}

export function notice(text, kind = "") {
  const box = document.getElementById("notice");
  replace(box, text ? el("div", { class: `notice ${kind}`, role: "status" }, text) : []);
}

export function header(active) {
  const link = (href, name) => el("a", { href, class: active === name ? "on" : "" }, name);
  const out = el("button", { class: "secondary", onclick: async () => {
    await fetch("/ui/logout", { method: "POST" }); location.href = "/ui/login";
  } }, "Log out");
  document.body.prepend(el("header", {}, el("span", { class: "brand" }, "cairn"),
    link("/ui/runs", "runs"), link("/ui/overview", "overview"), el("span", { class: "right" }, out)));
}

// Call `load` now, then again `every` ms (a number, or a function giving it) after each
// call ends, while the page is visible: a tab in the background asks the API nothing, and
// catches up the moment it is shown again. One call at a time, however slow the API; a
// call that fails says so and the next one comes all the same.
export function poll(load, every) {
  let timer = null;
  let running = false;
  async function tick() {
    timer = null;
    if (running || document.hidden) return;
    running = true;
    try { await load(); } catch (error) { notice(error.message, "error"); } finally { running = false; }
    if (!document.hidden && timer === null) {
      timer = setTimeout(tick, typeof every === "function" ? every() : every);
    }
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === null) tick();
  });
  tick();
}
