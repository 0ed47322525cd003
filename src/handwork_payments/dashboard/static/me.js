// A client's or worker's own account: balances, payments, disputes, history, payouts.
import { action, all, api, badge, fill, flash, h, me, money, stat, table, when } from "./core.js";

const CURRENCY = "USD";

async function balances(user) {
  if (user.role === "worker") {
    const e = await api("/payments/earnings/worker", { params: { currency: CURRENCY } });
    fill("#balances",
      stat("Available", money(e.available_balance, CURRENCY), "can be paid out"),
      stat("Pending", money(e.pending_balance, CURRENCY), "held in escrow"),
      stat("Earned", money(e.total_earned, CURRENCY)),
      stat("Paid out", money(e.total_paid_out, CURRENCY), `${money(e.pending_payouts, CURRENCY)} on the way`));
  } else {
    const s = await api("/payments/summary/client", { params: { currency: CURRENCY } });
    fill("#balances",
      stat("Spent", money(s.total_spent, CURRENCY), `${s.payment_count} payments`),
      stat("Held in escrow", money(s.total_held, CURRENCY)),
      stat("Released", money(s.total_released, CURRENCY)),
      stat("Refunded", money(s.total_refunded, CURRENCY)));
  }
}

async function lists(user) {
  const payments = await all("/payments/", {}, 200);
  fill("#my-payments", table([
    { label: "Payment", cell: (p) => `#${p.id}` },
    { label: "Amount", num: true, cell: (p) => money(p.amount, p.currency) },
    { label: user.role === "worker" ? "Your share" : "Fee", num: true, cell: (p) => money(user.role === "worker" ? p.worker_amount : p.platform_fee, p.currency) },
    { label: "Status", cell: (p) => badge(p.status) },
    { label: "Created", cell: (p) => when(p.created_at) },
    { label: "Auto-release", cell: (p) => when(p.auto_release_at) },
    { label: "", cell: (p) => user.role === "client" && p.status === "held"
      ? action("Release", async () => { await api(`/payments/${p.id}/release`, { method: "POST" }); flash(`Payment #${p.id} released`); await refresh(user); })
      : "" },
  ], payments, "No payments yet."));
  const disputes = await all("/payments/disputes", {}, 200);
  fill("#my-disputes", table([
    { label: "Dispute", cell: (d) => `#${d.id}` },
    { label: "Payment", cell: (d) => `#${d.payment_id}` },
    { label: "Reason", cell: (d) => d.reason },
    { label: "Status", cell: (d) => badge(d.status) },
    { label: "Outcome", cell: (d) => d.outcome || "—" },
  ], disputes, "No disputes."));
  const history = await api("/payments/transactions", { params: { limit: 50 } });
  fill("#history", table([
    { label: "When", cell: (t) => when(t.created_at) },
    { label: "Type", cell: (t) => badge(t.transaction_type) },
    { label: "Description", cell: (t) => t.description },
    { label: "Amount", num: true, cell: (t) => h("span", { class: String(t.amount).startsWith("-") ? "neg" : "pos" }, money(t.amount, t.currency)) },
  ], history.items, "No transactions yet."));
  if (user.role === "worker") {
    const payouts = await all("/payments/payouts", {}, 200);
    fill("#payouts", table([
      { label: "Payout", cell: (p) => `#${p.id}` },
      { label: "Amount", num: true, cell: (p) => money(p.amount, p.currency) },
      { label: "To", cell: (p) => p.payment_method },
      { label: "Status", cell: (p) => badge(p.status) },
      { label: "Requested", cell: (p) => when(p.requested_at) },
    ], payouts, "No payouts yet."));
  }
}

async function refresh(user) {
  await Promise.all([balances(user), lists(user)]);
}

// A description starting with = + - @ would be a formula to a spreadsheet: a leading
// apostrophe keeps it text (amounts, plain numbers, stay numbers).
function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (/^[=+\-@]/.test(text) && !/^-?\d+(\.\d+)?$/.test(text)) text = "'" + text;
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

async function exportCsv() {
  const rows = await all("/payments/transactions", {}, 100000);
  const columns = ["id", "created_at", "transaction_type", "amount", "currency", "description", "reference_id", "payment_id", "payout_id"];
  const lines = [columns.join(","), ...rows.map((r) => columns.map((c) => csvCell(r[c])).join(","))];
  const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv" });
  const link = h("a", { href: URL.createObjectURL(blob), download: `transactions-${new Date().toISOString().slice(0, 10)}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
}

export async function account() {
  const user = me();
  document.getElementById("export-csv").addEventListener("click", () => exportCsv().catch((e) => flash(e.message, "error")));
  const form = document.getElementById("payout-form");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const p = await api("/payments/payouts/request", { method: "POST", body: {
        amount: form.amount.value, currency: form.currency.value.toUpperCase(), payment_method: form.payment_method.value } });
      flash(`Payout #${p.id} of ${money(p.amount, p.currency)} requested`);
      form.amount.value = "";
      await refresh(user);
    } catch (err) {
      flash(err.message, "error");
    } finally {
      button.disabled = false;
    }
  });
  await refresh(user);
}
