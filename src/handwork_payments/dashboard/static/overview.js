// The admins' overview: GET /admin/analytics (volume, fees, success rate, dispute and
// payout times). Where that endpoint is not there yet, a rougher figure from the lists.
import { all, api, fill, h, money, stat } from "./core.js";
import { barChart } from "./charts.js";

function isoDate(d) {
  return d.toISOString().slice(0, 10);
}

function days(from, to) {
  const out = [];
  for (let d = new Date(from + "T00:00:00Z"); isoDate(d) <= to; d.setUTCDate(d.getUTCDate() + 1)) out.push(isoDate(d));
  return out;
}

function median(values) {
  if (!values.length) return null;
  const v = [...values].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

const hours = (a, b) => (new Date(b) - new Date(a)) / 3.6e6;

// The same shape as /admin/analytics, from the latest 1000 payments, disputes and payouts.
async function derived(from, to, currency) {
  const inRange = (iso) => iso && iso.slice(0, 10) >= from && iso.slice(0, 10) <= to;
  const payments = (await all("/payments/")).filter((p) => p.currency === currency);
  const disputes = await all("/payments/disputes");
  const payouts = (await all("/payments/payouts")).filter((p) => p.currency === currency);
  const held = payments.filter((p) => inRange(p.held_at));
  const failed = payments.filter((p) => p.status === "failed" && inRange(p.created_at));
  const daily = days(from, to).map((date) => {
    const that = held.filter((p) => p.held_at.slice(0, 10) === date);
    const released = payments.filter((p) => p.released_at && p.released_at.slice(0, 10) === date);
    return {
      date,
      volume: that.reduce((t, p) => t + Number(p.amount), 0),
      fee_revenue: released.reduce((t, p) => t + Number(p.platform_fee), 0),
      payments: that.length,
      failed: failed.filter((p) => p.created_at.slice(0, 10) === date).length,
    };
  });
  const resolved = disputes.filter((d) => d.resolved_at && inRange(d.resolved_at));
  const completed = payouts.filter((p) => p.completed_at && inRange(p.completed_at));
  return {
    currency, from, to, derived: true,
    payments: { created: payments.filter((p) => inRange(p.created_at)).length, held: held.length, failed: failed.length,
      success_rate: held.length + failed.length ? held.length / (held.length + failed.length) : null },
    volume: daily.reduce((t, d) => t + d.volume, 0).toFixed(2),
    fee_revenue: daily.reduce((t, d) => t + d.fee_revenue, 0).toFixed(2),
    refunded: null,
    disputes: { opened: disputes.filter((d) => inRange(d.created_at)).length, resolved: resolved.length,
      median_resolution_hours: median(resolved.map((d) => hours(d.created_at, d.resolved_at))) },
    payouts: { requested: payouts.filter((p) => inRange(p.requested_at)).length, completed: completed.length,
      failed: payouts.filter((p) => p.status === "failed").length,
      median_processing_hours: median(completed.map((p) => hours(p.requested_at, p.completed_at))) },
    daily,
  };
}

function pct(rate) {
  return rate === null || rate === undefined ? "—" : `${(Number(rate) * 100).toFixed(1)}%`;
}

function hrs(value) {
  if (value === null || value === undefined) return "—";
  const v = Number(value);
  return v < 1 ? `${Math.round(v * 60)} min` : `${v.toFixed(1)} h`;
}

function render(a) {
  const c = a.currency;
  fill("#stats",
    stat("Volume held", money(a.volume, c), `${a.payments.held} payments`),
    stat("Fee revenue", money(a.fee_revenue, c), a.net_revenue !== undefined ? `net ${money(a.net_revenue, c)}` : null),
    stat("Success rate", pct(a.payments.success_rate), `${a.payments.failed} failed`),
    stat("Refunded", a.refunded === null ? "—" : money(a.refunded, c), a.losses !== undefined ? `losses ${money(a.losses, c)}` : null),
  );
  const labels = a.daily.map((d) => d.date);
  const amount = (v) => (v >= 1000 ? `${+(v / 1000).toFixed(2)}k` : String(+v.toFixed(2)));
  fill("#chart-volume", barChart(labels, [{ label: "volume", values: a.daily.map((d) => Number(d.volume)), class: "primary" }], { format: amount }));
  fill("#chart-fees", barChart(labels, [{ label: "fee revenue", values: a.daily.map((d) => Number(d.fee_revenue)), class: "green" }], { format: amount }));
  fill("#chart-payments", barChart(labels, [
    { label: "held", values: a.daily.map((d) => d.payments), class: "primary" },
    { label: "failed", values: a.daily.map((d) => d.failed), class: "red" },
  ], { format: (v) => String(v), integer: true }));
  fill("#times", h("dl", { class: "facts" },
    h("dt", {}, "Disputes opened / resolved"), h("dd", {}, `${a.disputes.opened} / ${a.disputes.resolved}`),
    h("dt", {}, "Median time to resolve a dispute"), h("dd", {}, hrs(a.disputes.median_resolution_hours)),
    h("dt", {}, "Payouts requested / completed / failed"), h("dd", {}, `${a.payouts.requested} / ${a.payouts.completed} / ${a.payouts.failed}`),
    h("dt", {}, "Median payout processing time"), h("dd", {}, hrs(a.payouts.median_processing_hours)),
    a.provider_fees !== undefined ? [h("dt", {}, "Provider fees"), h("dd", {}, money(a.provider_fees, c))] : null,
  ));
}

export async function overview() {
  const form = document.getElementById("range");
  const today = new Date();
  const start = new Date(today.getTime() - 29 * 864e5);
  form.from.value ||= isoDate(start);
  form.to.value ||= isoDate(today);
  const load = async () => {
    const params = { from: form.from.value, to: form.to.value, currency: form.currency.value.toUpperCase() };
    let a = await api("/admin/analytics", { params, optional: true });
    const notice = document.getElementById("analytics-notice");
    notice.hidden = a !== null;
    if (a === null) {
      notice.textContent = "The analytics endpoint is not available on this server: figures below are derived from the latest payments, disputes and payouts.";
      a = await derived(params.from, params.to, params.currency);
    }
    render(a);
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  await load();
}
