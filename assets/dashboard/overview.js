// The overview: messages per minute (chart), queue depth by priority, balance, and the last
// 24 hours' and 30 days' delivery and read rates, from GET /overview, refreshed every 10 s.

import { api } from "./api.js";
import { minuteChart, STATUSES } from "./chart.js";
import { errorBox, facts, fill, formatMoney, formatNumber, formatRate, formatTime, h, showError, table } from "./dom.js";

const REFRESH_MS = 10_000;
const PRIORITIES = ["urgent", "high", "normal", "low"];

function windowCard(title, w) {
  const byStatus = (w && w.by_status) || {};
  return h("section", { class: "card", "aria-label": title },
    h("h2", null, title),
    facts([
      ["Messages", formatNumber(w && w.total)],
      ["Delivery rate", formatRate(w && w.delivery_rate)],
      ["Read rate", formatRate(w && w.read_rate)],
    ], { class: "facts big" }),
    h("details", null,
      h("summary", null, "By status"),
      table(null, ["Status", "Messages"], STATUSES.map((s) => [s, formatNumber(byStatus[s])]))),
  );
}

function render(body, o) {
  const balance = o.balance || {};
  const queue = o.queue || {};
  const waiting = PRIORITIES.reduce((sum, p) => sum + Number(queue[p] || 0), 0);
  // A refresh redraws everything; what the user opened stays open.
  const open = Array.from(body.querySelectorAll("details"), (d) => d.open);
  // The card's inner width (the card has 1rem padding and a border on each side).
  const chartWidth = body.clientWidth - 34;
  fill(body,
    h("div", { class: "cards" },
      h("section", { class: "card", "aria-labelledby": "balance-title" },
        h("h2", { id: "balance-title" }, "Balance"),
        h("p", { class: "figure", id: "balance" }, formatMoney(balance.balance, balance.currency)),
        balance.messages_remaining !== undefined
          ? h("p", { class: "muted" }, `${formatNumber(balance.messages_sent_today)} sent today, ` +
            `${formatNumber(balance.messages_remaining)} more allowed`)
          : null),
      h("section", { class: "card", "aria-labelledby": "queue-title" },
        h("h2", { id: "queue-title" }, "Queue"),
        h("p", { class: "figure" }, `${formatNumber(waiting)} waiting`),
        table(null, ["Priority", "Waiting"], PRIORITIES.map((p) => [p, formatNumber(queue[p])]),
          { id: "queue-table" })),
      windowCard("Last 24 hours", o.last_24h),
      windowCard("Last 30 days", o.last_30d),
    ),
    h("section", { class: "card wide", "aria-labelledby": "chart-title" },
      h("h2", { id: "chart-title" }, "Messages per minute, last hour"),
      minuteChart(o.per_minute, chartWidth)),
    h("p", { class: "muted" }, `As of ${formatTime(o.as_of)}; refreshed every 10 seconds.`),
  );
  body.querySelectorAll("details").forEach((d, i) => {
    d.open = Boolean(open[i]);
  });
}

export function overviewPage(root) {
  const error = errorBox();
  const body = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  fill(root, h("h1", { tabindex: -1 }, "Overview"), error, body);
  let timer = null;
  let stopped = false;
  let shown = null;
  // The chart is drawn for its width: draw it again when the window changes size.
  let resizing = 0;
  const onResize = () => {
    cancelAnimationFrame(resizing);
    resizing = requestAnimationFrame(() => shown && render(body, shown));
  };
  window.addEventListener("resize", onResize);
  async function load() {
    try {
      const o = await api("/overview");
      if (stopped) return;
      showError(error, null);
      shown = o;
      render(body, o);
    } catch (e) {
      if (!stopped) showError(error, e);
    }
    if (!stopped) timer = setTimeout(load, REFRESH_MS);
  }
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
    window.removeEventListener("resize", onResize);
  };
}
