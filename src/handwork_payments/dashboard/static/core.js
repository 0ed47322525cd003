// What every page shares: the token, the API, building DOM nodes (never HTML strings).
const TOKEN = "handwork.token";
const ME = "handwork.me";
export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN);
}

export function me() {
  const raw = sessionStorage.getItem(ME);
  return raw ? JSON.parse(raw) : null;
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(ME);
  location.assign("/dashboard/login");
}

export async function signIn(email, password) {
  const body = new URLSearchParams({ username: email, password });
  const r = await fetch(`${API}/auth/token`, { method: "POST", body });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(r.status, data.detail || "Sign-in failed");
  sessionStorage.setItem(TOKEN, data.access_token);
  const user = await api("/auth/me");
  sessionStorage.setItem(ME, JSON.stringify(user));
  return user;
}

// Every call carries the user's token: the API decides what the user may see and do.
export async function api(path, { method = "GET", body, params, optional = false } = {}) {
  const url = new URL(API + path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method === "POST") headers["Idempotency-Key"] = crypto.randomUUID();
  const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) {
    signOut();
    throw new ApiError(401, "Signed out");
  }
  // An endpoint another release adds (404 on the route itself): the page says so.
  if (optional && (r.status === 404 || r.status === 405)) return null;
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, (data && data.detail) || `HTTP ${r.status}`);
  return data;
}

// All pages of a list (the API pages by 100 at most), up to `max` items.
export async function all(path, params = {}, max = 1000) {
  const items = [];
  for (let skip = 0; skip < max; skip += 100) {
    const page = await api(path, { params: { ...params, skip, limit: 100 } });
    items.push(...page.items);
    if (items.length >= page.total || page.items.length === 0) break;
  }
  return items;
}

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function fill(target, ...children) {
  const el = typeof target === "string" ? document.querySelector(target) : target;
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
  return el;
}

export function flash(message, kind = "ok") {
  const el = document.getElementById("flash");
  if (!el) return;
  el.textContent = message;
  el.className = `flash ${kind}`;
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => (el.hidden = true), 6000);
}

export function money(amount, currency) {
  if (amount === null || amount === undefined) return "—";
  const [whole, frac] = String(amount).split(".");
  const sign = whole.startsWith("-") ? "-" : "";
  const digits = whole.replace("-", "").replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${sign}${digits}${frac ? "." + frac : ""}${currency ? " " + currency : ""}`;
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function badge(status) {
  return h("span", { class: `badge ${String(status).replace(/[^a-z_]/gi, "")}` }, String(status).replace(/_/g, " "));
}

export function table(columns, rows, empty = "Nothing here.") {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, rows.map((row) => h("tr", { "data-id": row.id }, columns.map((c) => h("td", { class: [c.num && "num", c.nowrap && "nowrap"].filter(Boolean).join(" ") || null }, c.cell(row)))))),
  );
}

export function stat(label, value, hint) {
  return h("div", { class: "card stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), hint ? h("div", { class: "hint" }, hint) : null);
}

// A button that runs an action once, then says how it went.
export function action(label, run, { kind = "", confirmText } = {}) {
  const button = h("button", { type: "button", class: kind }, label);
  button.addEventListener("click", async () => {
    if (confirmText && !confirm(confirmText)) return;
    button.disabled = true;
    try {
      await run();
    } catch (e) {
      flash(e.message, "error");
      button.disabled = false;
    }
  });
  return button;
}
