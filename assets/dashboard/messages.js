// Messages: search by number, status, campaign, channel and date (newest first, a page at a
// time), and one message's history.

import { api } from "./api.js";
import { STATUSES } from "./chart.js";
import { badge, errorBox, facts, fill, formatMoney, formatTime, h, showError, table } from "./dom.js";

const PAGE_SIZE = 50;

function field(label, control) {
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control);
}

/** Midnight (local time) starting `date` ("YYYY-MM-DD"), `days` later, as RFC 3339. */
function dayStart(date, days) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(y, m - 1, d + days).toISOString();
}

/** `params`: filters to start with (from the address, e.g. a campaign's link). */
export function messagesPage(root, params) {
  const error = errorBox();
  const phone = h("input", { id: "m-phone", name: "phone_number", type: "tel", autocomplete: "off" });
  const status = h("select", { id: "m-status", name: "status" },
    h("option", { value: "" }, "any"), STATUSES.map((s) => h("option", { value: s }, s)));
  const campaign = h("input", { id: "m-campaign", name: "campaign_id", autocomplete: "off" });
  const channel = h("select", { id: "m-channel", name: "channel" },
    h("option", { value: "" }, "any"), h("option", { value: "sms" }, "SMS"),
    h("option", { value: "whatsapp" }, "WhatsApp"));
  const from = h("input", { id: "m-from", name: "from", type: "date" });
  const to = h("input", { id: "m-to", name: "to", type: "date" });
  phone.value = params.get("phone_number") || "";
  campaign.value = params.get("campaign_id") || "";
  status.value = params.get("status") || "";
  channel.value = params.get("channel") || "";

  const rows = h("tbody");
  const results = h("section", { "aria-labelledby": "results-title", hidden: true },
    h("h2", { id: "results-title" }, "Messages"),
    h("div", { class: "table-wrap" }, h("table", { id: "message-table" },
      h("thead", null, h("tr", null, ["Number", "Status", "Text", "Channel", "Cost", "Created"]
        .map((t) => h("th", { scope: "col" }, t)))),
      rows)));
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older messages");
  const history = h("section", { id: "history", "aria-labelledby": "history-title", hidden: true });
  let filters = null;
  let next = null;
  let count = 0;

  function currentFilters() {
    return {
      phone_number: phone.value.trim(),
      status: status.value,
      campaign_id: campaign.value.trim(),
      channel: channel.value,
      created_from: from.value ? dayStart(from.value, 0) : "",
      created_to: to.value ? dayStart(to.value, 1) : "",
      limit: PAGE_SIZE,
    };
  }

  async function load(before) {
    showError(error, null);
    try {
      const page = await api("/messages", { query: { ...filters, before } });
      if (!before) {
        rows.replaceChildren();
        count = 0;
      }
      for (const m of page.messages) {
        const open = h("button", { type: "button", class: "link", "aria-label": `History of the message to ${m.phone_number}` },
          m.phone_number);
        open.addEventListener("click", () => showHistory(m.message_id));
        rows.append(h("tr", null,
          h("td", null, open),
          h("td", null, badge(m.status)),
          h("td", { class: "text" }, m.message),
          h("td", null, m.channel),
          h("td", null, formatMoney(m.cost)),
          h("td", null, formatTime(m.created_at))));
      }
      count += page.messages.length;
      next = page.next_before;
      more.hidden = !next;
      results.hidden = false;
      // A rare status may give a short page with more to examine after it.
      summary.textContent = count === 0
        ? (next ? "No match among the newest messages yet: look further with Older messages." : "No message matches.")
        : `${count} message${count === 1 ? "" : "s"} shown${next ? "; older ones follow" : ""}.`;
    } catch (e) {
      showError(error, e);
    }
  }

  async function showHistory(id) {
    history.hidden = false;
    fill(history, h("h2", { id: "history-title", tabindex: -1 }, "Message history"), h("p", { class: "muted" }, "Loading…"));
    try {
      const m = await api(`/message/${encodeURIComponent(id)}/status/`);
      fill(history,
        h("h2", { id: "history-title", tabindex: -1 }, `Message to ${m.phone_number}`),
        facts([
          ["Id", m.message_id],
          ["Status", badge(m.status)],
          ["Channel, priority", `${m.channel}, ${m.priority}`],
          ["Segments, cost", `${m.segments}, ${formatMoney(m.cost)}`],
          ["Provider", m.provider ? `${m.provider} ${m.provider_message_id || ""}` : "—"],
          ["Error", m.error_code ? `${m.error_code}: ${m.error_message || ""}` : "—"],
        ]),
        table("Status history, oldest first", ["Status", "At"],
          (m.history || []).map((e) => [badge(e.status), formatTime(e.at)]), { id: "history-table" }),
        h("button", { type: "button", class: "secondary", onclick: () => { history.hidden = true; } }, "Close"));
    } catch (e) {
      fill(history, h("h2", { id: "history-title", tabindex: -1 }, "Message history"), h("p", { class: "error", role: "alert" }, e.message));
    }
    history.querySelector("h2").focus();
  }

  const form = h("form", { class: "stack", id: "search-form", role: "search" },
    h("div", { class: "row" }, field("Number", phone), field("Status", status), field("Channel", channel)),
    h("div", { class: "row" }, field("Campaign id", campaign), field("Created from", from), field("Created to", to)),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    filters = currentFilters();
    history.hidden = true;
    load(null);
  });
  more.addEventListener("click", () => load(next));

  fill(root, h("h1", { tabindex: -1 }, "Messages"), form, error, summary, results, more, history);
  filters = currentFilters();
  load(null);
}
