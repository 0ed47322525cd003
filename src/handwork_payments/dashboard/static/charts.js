// Bar charts as SVG, drawn here: no chart library (the page loads nothing from elsewhere).
import { h } from "./core.js";

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// The top of the axis: four equal steps of 1, 2, 2.5 or 5 times a power of ten (whole
// steps for counts), so that every gridline has a round label.
function niceMax(value, integer) {
  if (value <= 0) return 4;
  const raw = value / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const factors = integer ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  const step = Math.max(integer ? 1 : 0, factors.map((f) => f * power).find((s) => s >= raw));
  return step * 4;
}

// series: [{label, values: [numbers], class}] over the same `labels` (dates).
export function barChart(labels, series, { format = (v) => String(v), integer = false } = {}) {
  const width = 560, height = 220, left = 56, bottom = 26, top = 10;
  const plotW = width - left - 8, plotH = height - top - bottom;
  const max = niceMax(Math.max(0, ...series.flatMap((x) => x.values)), integer);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "bars", role: "img" });
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    svg.append(s("line", { x1: left, x2: width - 8, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" }, format((max * i) / 4)));
  }
  const n = Math.max(labels.length, 1);
  const slot = plotW / n;
  const barW = Math.max(2, (slot * 0.8) / series.length);
  labels.forEach((label, i) => {
    series.forEach((x, j) => {
      const v = x.values[i] || 0;
      const bh = (plotH * v) / max;
      const bar = s("rect", {
        x: left + i * slot + slot * 0.1 + j * barW,
        y: top + plotH - bh,
        width: barW - 1,
        height: Math.max(bh, v > 0 ? 1 : 0),
        rx: 2,
        class: `bar ${x.class || ""}`,
      });
      bar.append(s("title", {}, `${label}: ${x.label} ${format(v)}`));
      svg.append(bar);
    });
    const every = Math.ceil(n / 8);
    if (i % every === 0) {
      svg.append(s("text", { x: left + i * slot + slot / 2, y: height - 8, class: "axis", "text-anchor": "middle" }, label.slice(5)));
    }
  });
  const legend = h("div", { class: "legend" }, series.map((x) => h("span", { class: `key ${x.class || ""}` }, x.label)));
  return h("div", {}, svg, series.length > 1 ? legend : null);
}
