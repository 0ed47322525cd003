// A payment's full story (GET /admin/payments/{id}/story) and the user search.
import { api, badge, fill, h, money, table, when } from "./core.js";

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function card(title, ...content) {
  return h("section", { class: "card" }, h("h2", {}, title), ...content);
}

// The audit log keeps amounts in minor units: shown in the payment's currency here.
// Every amount escrow.snapshot and the refund rows record (released_amount came with milestones).
const AMOUNTS = new Set(["amount", "refunded_amount", "captured_amount", "released_amount", "refund_amount"]);

function change(before, after, decimals) {
  if (!after) return "";
  const show = (k, v) => (v === null || v === undefined ? "—" : AMOUNTS.has(k) && typeof v === "number" ? (v / 10 ** decimals).toFixed(decimals) : String(v));
  const keys = Object.keys(after).filter((k) => !before || JSON.stringify(before[k]) !== JSON.stringify(after[k]));
  return h("span", { class: "small" }, keys.map((k) => h("span", { class: "change" }, `${k.replace(/_/g, " ")}: `, before && k in before ? `${show(k, before[k])} → ` : "", h("strong", {}, show(k, after[k])))));
}

function render(s) {
  const p = s.payment, c = p.currency;
  const decimals = (String(p.amount).split(".")[1] || "").length;
  const journal = s.journal.map((e) => h("div", { class: "entry" },
    h("div", { class: "entry-head" }, h("strong", {}, e.kind.replace(/_/g, " ")), h("span", { class: "muted small" }, ` · ${e.key} · ${when(e.created_at)}`)),
    h("div", { class: "muted small" }, e.description),
    table([
      { label: "Account", cell: (x) => h("code", {}, x.account) },
      { label: "Amount", num: true, cell: (x) => h("span", { class: x.amount.startsWith("-") ? "neg" : "pos" }, money(x.amount, c)) },
    ], e.postings)));
  return [
    h("section", { class: "grid two" },
      card("Payment", facts([
        ["Status", badge(p.status)],
        ["Amount", money(p.amount, c)],
        ["Platform fee", money(p.platform_fee, c)],
        ["Worker's share", money(p.worker_amount, c)],
        ["Refunded", money(p.refunded_amount, c)],
        ["Created", when(p.created_at)],
        ["Held", when(p.held_at)],
        ["Capture by", p.capture_by ? when(p.capture_by) : null],
        ["Auto-release at", p.auto_release_at ? when(p.auto_release_at) : null],
        ["Released", p.released_at ? when(p.released_at) : null],
        ["Failure", p.failure_reason],
      ])),
      card("Booking and provider", facts([
        ["Booking", `#${s.booking.id} · ${s.booking.title}`],
        ["Booking status", badge(s.booking.status)],
        ["Client / worker", `#${s.booking.client_id} / #${s.booking.worker_id}`],
        ["Provider", s.provider.payment_method],
        ["Hold", s.provider.hold_kind],
        ["Stripe id", s.provider.stripe_payment_id && h("code", {}, s.provider.stripe_payment_id)],
        ["PayPal id", s.provider.paypal_payment_id && h("code", {}, s.provider.paypal_payment_id)],
        ["Authorization", s.provider.authorization_id && h("code", {}, s.provider.authorization_id)],
        ["Capture", s.provider.capture_id && h("code", {}, s.provider.capture_id)],
        ["Metadata", p.payment_metadata ? h("code", {}, JSON.stringify(p.payment_metadata)) : null],
      ]))),
    card("State changes (audit trail)", table([
      { label: "When", cell: (a) => when(a.created_at) },
      { label: "Action", nowrap: true, cell: (a) => h("strong", {}, a.action) },
      { label: "By", nowrap: true, cell: (a) => a.actor_id ? `user #${a.actor_id}` : a.actor_kind },
      { label: "Change", cell: (a) => change(a.before, a.after, decimals) },
    ], s.audit)),
    s.refunds.length ? card("Refunds", table([
      { label: "Refund", cell: (r) => `#${r.id}` },
      { label: "Amount", num: true, cell: (r) => money(r.amount, c) },
      { label: "Fee part", num: true, cell: (r) => money(r.fee_part, c) },
      { label: "Status", cell: (r) => badge(r.status) },
      { label: "Reason", cell: (r) => r.reason },
      { label: "Provider id", cell: (r) => r.provider_refund_id ? h("code", {}, r.provider_refund_id) : "—" },
    ], s.refunds)) : null,
    s.disputes.length ? card("Disputes", table([
      { label: "Dispute", cell: (d) => `#${d.id}` },
      { label: "Status", cell: (d) => badge(d.status) },
      { label: "Outcome", cell: (d) => d.outcome || "—" },
      { label: "Reason", cell: (d) => d.reason },
      { label: "Notes", cell: (d) => d.resolution_notes || "" },
    ], s.disputes)) : null,
    card("Ledger entries", journal.length ? journal : h("p", { class: "empty" }, "No money moved.")),
    card("Events sent to the marketplace", table([
      { label: "Event", cell: (e) => h("code", {}, e.public_id) },
      { label: "Type", cell: (e) => e.type },
      { label: "Status", cell: (e) => badge(e.status) },
      { label: "Attempts", num: true, cell: (e) => e.attempts },
      { label: "Created", cell: (e) => when(e.created_at) },
    ], s.events, "No events.")),
  ];
}

export async function payment() {
  const form = document.getElementById("find-payment");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.assign(`/dashboard/payments/${form.id.value}`);
  });
  const id = document.body.dataset.paymentId;
  if (!id) return;
  form.id.value = id;
  try {
    fill("#story", render(await api(`/admin/payments/${id}/story`)));
  } catch (e) {
    fill("#story", h("p", { class: "notice" }, e.status === 404 ? `No payment #${id}.` : e.message));
  }
}

export async function users() {
  const form = document.getElementById("user-search");
  const search = async (q) => {
    const found = await api("/admin/users", { params: { q, limit: 50 }, optional: true });
    if (found === null) {
      fill("#users", h("p", { class: "notice" }, "User search is not available on this server yet."));
      return;
    }
    const items = found.items || found;
    fill("#users", table([
      { label: "User", cell: (u) => `#${u.id}` },
      { label: "Name", cell: (u) => u.full_name },
      { label: "Email", cell: (u) => u.email },
      { label: "Role", cell: (u) => badge(u.role) },
      { label: "Since", cell: (u) => when(u.created_at) },
    ], items, "Nobody matches."));
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    search(form.q.value);
  });
  const q = new URLSearchParams(location.search).get("q");
  if (q) {
    form.q.value = q;
    await search(q);
  }
}
