// Messages per minute by status, as stacked bars drawn in SVG (no charting library: the
// whole dashboard stays a few tens of kilobytes). Colours come from CSS classes
// (`.s-<status>`), so the page needs no inline styles under its Content-Security-Policy.

import { h, svg } from "./dom.js";

export const STATUSES = [
  "queued", "sending", "sent", "delivered", "read",
  "failed", "undelivered", "expired", "canceled",
];

const HEIGHT = 240;
const PAD = { top: 12, right: 8, bottom: 28, left: 40 };

/** A round number at or above `n` for the top of the scale (1, 2, 5 × 10^k). */
function niceCeiling(n) {
  if (n <= 4) return 4;
  const power = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= n) return step * power;
  }
  return 10 * power;
}

function clock(iso) {
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/**
 * The chart for `perMinute` ([{minute, queued, …}], oldest first) as a <figure>: the SVG,
 * its legend, and a sentence summing it up for screen readers. `width` is the space it gets
 * in CSS pixels: drawn at that size, its text stays legible on a phone.
 */
export function minuteChart(perMinute, width) {
  const WIDTH = Math.round(Math.min(Math.max(Number(width) || 720, 300), 1400));
  const labelEvery = WIDTH < 560 ? 20 : 10;
  const minutes = Array.isArray(perMinute) ? perMinute : [];
  const totals = minutes.map((m) => STATUSES.reduce((sum, s) => sum + Number(m[s] || 0), 0));
  const top = niceCeiling(Math.max(0, ...totals));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(minutes.length, 1);
  const barW = Math.max(slot - 2, 1);
  const y = (v) => PAD.top + plotH - (v / top) * plotH;

  const sum = totals.reduce((a, b) => a + b, 0);
  const label = `Messages per minute by status over the last ${minutes.length} minutes: ` +
    `${sum.toLocaleString()} status changes in all, at most ${Math.max(0, ...totals)} in one minute.`;
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label, class: "chart",
  });

  // The scale: 0, half and the top, with light grid lines.
  for (const v of [0, top / 2, top]) {
    chart.append(
      svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" },
        v.toLocaleString()),
    );
  }

  minutes.forEach((m, i) => {
    const x = PAD.left + i * slot + 1;
    const group = svg("g", null,
      svg("title", null, `${clock(m.minute)}: ` + (STATUSES
        .filter((s) => Number(m[s] || 0) > 0)
        .map((s) => `${m[s]} ${s}`)
        .join(", ") || "nothing")));
    let base = 0;
    for (const s of STATUSES) {
      const n = Number(m[s] || 0);
      if (n <= 0) continue;
      group.append(svg("rect", {
        x, width: barW, y: y(base + n), height: Math.max(y(base) - y(base + n), 0.5),
        class: `bar s-${s}`,
      }));
      base += n;
    }
    // An invisible full-height target so the tooltip shows on empty minutes too.
    group.append(svg("rect", { x, width: barW, y: PAD.top, height: plotH, class: "hit" }));
    chart.append(group);
    // A time label every few minutes (not crowding the last), and on the last minute.
    const last = i === minutes.length - 1;
    if (last || (i % labelEvery === 0 && minutes.length - 1 - i >= labelEvery / 2)) {
      chart.append(svg("text", {
        x: last ? WIDTH - PAD.right : x + barW / 2, y: HEIGHT - 8,
        "text-anchor": last ? "end" : "middle", class: "axis",
      }, clock(m.minute)));
    }
  });

  const legend = h("ul", { class: "legend", "aria-label": "Statuses" },
    STATUSES.map((s) => h("li", null, h("span", { class: `swatch s-${s}`, "aria-hidden": "true" }), s)));
  return h("figure", { class: "chart-figure", id: "minute-chart" },
    chart, legend, h("figcaption", { class: "muted" }, label));
}
