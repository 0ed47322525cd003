// What needs a decision: risk reviews, disputes, payouts, held payments, alerts, dead deliveries.
import { action, all, api, badge, fill, flash, h, money, table, when } from "./core.js";

const storyLink = (id) => h("a", { href: `/dashboard/payments/${id}` }, `#${id}`);

function section(id, count, content) {
  const el = document.getElementById(id);
  const title = el.querySelector("h2");
  title.querySelector(".count")?.remove();
  title.append(h("span", { class: "count" }, String(count)));
  fill(el.querySelector(".body"), content);
  return count;
}

function resolveForm(dispute, reload) {
  const outcome = h("select", { name: "outcome" },
    h("option", { value: "release" }, "Release to worker"),
    h("option", { value: "refund" }, "Refund client"),
    h("option", { value: "split" }, "Split"));
  const amount = h("input", { name: "refund_amount", placeholder: "refund", size: 7, inputmode: "decimal", hidden: true });
  const notes = h("input", { name: "resolution_notes", placeholder: "notes for the parties", size: 18, required: true });
  outcome.addEventListener("change", () => (amount.hidden = outcome.value !== "split"));
  const form = h("form", { class: "inline tight resolve" }, outcome, amount, notes, h("button", { type: "submit", class: "primary" }, "Resolve"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { outcome: outcome.value, resolution_notes: notes.value || "Resolved by an admin" };
    if (outcome.value === "split") body.refund_amount = amount.value;
    try {
      form.querySelector("button").disabled = true;
      await api(`/payments/disputes/${dispute.id}/resolve`, { method: "POST", body });
      flash(`Dispute #${dispute.id} resolved (${outcome.value})`);
      await reload();
    } catch (err) {
      flash(err.message, "error");
      form.querySelector("button").disabled = false;
    }
  });
  return form;
}

async function disputes(reload) {
  const open = (await all("/payments/disputes")).filter((d) => d.status === "open" || d.status === "under_review");
  return section("q-disputes", open.length, table([
    { label: "Dispute", cell: (d) => `#${d.id}` },
    { label: "Payment", cell: (d) => storyLink(d.payment_id) },
    { label: "Reason", cell: (d) => h("div", {}, h("strong", {}, d.reason), h("div", { class: "muted small" }, d.description)) },
    { label: "Status", cell: (d) => badge(d.status) },
    { label: "Opened", cell: (d) => when(d.created_at) },
    { label: "Decision", cell: (d) => d.status === "open"
      ? action("Start review", async () => { await api(`/payments/disputes/${d.id}/review`, { method: "POST" }); flash(`Dispute #${d.id} under review`); await reload(); })
      : resolveForm(d, reload) },
  ], open, "No open disputes."));
}

async function reviews(reload) {
  const page = await api("/admin/reviews", { params: { status: "open", limit: 100 } });
  const decide = (r, verb, body) => action(verb === "approve" ? "Approve" : "Reject", async () => {
    await api(`/admin/reviews/${r.id}/${verb}`, { method: "POST", body });
    flash(`Review #${r.id}: ${verb === "approve" ? "approved" : "rejected"}`);
    await reload();
  }, verb === "approve"
    ? { kind: "primary" }
    : { confirmText: r.object_type === "payment" ? "Refund this payment in full?" : "Fail this payout (its amount goes back to the worker's balance)?" });
  return section("q-reviews", page.total, table([
    { label: "Review", cell: (r) => `#${r.id}` },
    { label: "Of", cell: (r) => r.object_type === "payment" ? storyLink(r.object_id) : `payout #${r.object_id}` },
    { label: "Level", cell: (r) => badge(r.risk_level) },
    { label: "Why", cell: (r) => h("div", { class: "muted small" }, r.reasons.join("; ")) },
    { label: "Opened", cell: (r) => when(r.created_at) },
    { label: "", cell: (r) => h("div", {}, decide(r, "approve"), decide(r, "reject", { reason: "Rejected in review" })) },
  ], page.items, "No open risk reviews."));
}

async function payouts(reload) {
  const pending = (await all("/payments/payouts")).filter((p) => p.status === "pending");
  return section("q-payouts", pending.length, table([
    { label: "Payout", cell: (p) => `#${p.id}` },
    { label: "Worker", cell: (p) => `#${p.worker_id}` },
    { label: "Amount", num: true, cell: (p) => money(p.amount, p.currency) },
    { label: "To", cell: (p) => p.payment_method },
    { label: "Requested", cell: (p) => when(p.requested_at) },
    { label: "", cell: (p) => action("Process", async () => {
      await api(`/payments/payouts/${p.id}/process`, { method: "POST" });
      flash(`Payout #${p.id} sent for processing`);
      await reload();
    }, { kind: "primary" }) },
  ], pending, "No pending payouts."));
}

async function held() {
  const items = await all("/payments/", { status: "held" });
  return section("q-held", items.length, table([
    { label: "Payment", cell: (p) => storyLink(p.id) },
    { label: "Amount", num: true, cell: (p) => money(p.amount, p.currency) },
    { label: "Via", cell: (p) => p.payment_method },
    { label: "Held since", cell: (p) => when(p.held_at) },
    { label: "Capture by", cell: (p) => when(p.capture_by) },
    { label: "Auto-release at", cell: (p) => when(p.auto_release_at) },
  ], items, "No payments held."));
}

async function alerts(reload) {
  const page = await api("/admin/alerts", { params: { status: "open", limit: 100 } });
  const open = page.items.filter((a) => !a.status || a.status === "open");
  return section("q-alerts", open.length, table([
    { label: "Kind", cell: (a) => badge(a.kind) },
    { label: "Message", cell: (a) => a.message },
    { label: "Seen", cell: (a) => a.count ? `${a.count}× · last ${when(a.last_seen_at)}` : when(a.created_at) },
    { label: "", cell: (a) => action("Acknowledge", async () => {
      const done = await api(`/admin/alerts/${a.id}/acknowledge`, { method: "POST", optional: true });
      if (done === null) throw new Error("Acknowledging alerts is not available on this server yet");
      flash(`Alert #${a.id} acknowledged`);
      await reload();
    }) },
  ], open, "No open alerts."));
}

async function webhooks(reload) {
  const page = await api("/admin/webhooks", { params: { status: "dead", limit: 100 } });
  return section("q-webhooks", page.total, table([
    { label: "Delivery", cell: (d) => `#${d.id}` },
    { label: "Provider", cell: (d) => d.provider },
    { label: "Event", cell: (d) => h("code", {}, d.event_type) },
    { label: "Attempts", num: true, cell: (d) => d.attempts },
    { label: "Last error", cell: (d) => h("span", { class: "muted small" }, d.last_error || "") },
    { label: "", cell: (d) => action("Replay", async () => {
      await api(`/admin/webhooks/${d.id}/replay`, { method: "POST" });
      flash(`Webhook #${d.id} replayed`);
      await reload();
    }) },
  ], page.items, "No dead webhooks."));
}

async function events(reload) {
  const dead = await api("/admin/events", { params: { status: "dead", limit: 100 } });
  const failing = await api("/admin/events", { params: { status: "failed", limit: 100 } });
  const items = [...dead.items, ...failing.items];
  return section("q-events", items.length, table([
    { label: "Event", cell: (e) => h("code", {}, e.public_id) },
    { label: "Type", cell: (e) => e.type },
    { label: "Status", cell: (e) => badge(e.status) },
    { label: "Attempts", num: true, cell: (e) => e.attempts },
    { label: "Last error", cell: (e) => h("span", { class: "muted small" }, e.last_error || "") },
    { label: "", cell: (e) => action("Redeliver", async () => {
      await api(`/admin/events/${e.id}/redeliver`, { method: "POST" });
      flash(`Event ${e.public_id} queued for redelivery`);
      await reload();
    }) },
  ], items, "Every event was delivered."));
}

export async function queues() {
  const reload = async () => {
    const counts = await Promise.all([disputes(reload), payouts(reload), held(), alerts(reload), webhooks(reload), events(reload), reviews(reload)]);
    const waiting = counts[0] + counts[1] + counts[3] + counts[4] + counts[5] + counts[6];
    fill("#queue-count", waiting ? String(waiting) : "");
  };
  await reload();
}
