// Campaigns: the list, launching one from a CSV file (a dry run first, showing its cost and
// rejected rows, then a confirmation), and one campaign's live progress with its controls.

import { api, download, followEvents } from "./api.js";
import {
  badge, errorBox, facts, fill, formatMoney, formatNumber, formatTime, h, randomKey, showError, table,
} from "./dom.js";

/** How often an open campaign is read again while it sends, with no event stream. */
const POLL_MS = 1500;
/** With the event stream live, its events drive the refreshes; this catches the rest (the
 * campaign's own state: paused, completed). */
const POLL_STREAMING_MS = 4000;
/** Events arriving together cause one refresh at most this often. */
const REFRESH_MS = 300;
/** Once it is finished, receipts may still arrive: read it less often. */
const POLL_FINISHED_MS = 5000;

let currency = "";
/** The account's currency, for showing costs (the campaign answers carry amounts only). */
export function setCurrency(c) {
  currency = c || "";
}

function money(n) {
  return formatMoney(n, currency);
}

// --- the list ---------------------------------------------------------------------------

function progressText(c) {
  const k = c.counters || {};
  const delivered = Number(k.delivered || 0) + Number(k.read || 0);
  return `${formatNumber(delivered)} of ${formatNumber(c.recipients_accepted)} delivered`;
}

export function campaignListPage(root) {
  const error = errorBox();
  const rows = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older campaigns");
  const refresh = h("button", { type: "button", class: "secondary" }, "Refresh");
  const empty = h("p", { class: "muted", hidden: true }, "No campaigns yet.");
  let next = null;

  async function load(before) {
    showError(error, null);
    try {
      const page = await api("/campaigns", { query: { before, limit: 20 } });
      if (!before) rows.replaceChildren();
      for (const c of page.campaigns) {
        rows.append(h("tr", null,
          h("td", null, h("a", { href: `#/campaigns/${encodeURIComponent(c.campaign_id)}` }, c.name)),
          h("td", null, badge(c.status)),
          h("td", null, progressText(c)),
          h("td", null, money(c.cost_so_far)),
          h("td", null, formatTime(c.created_at))));
      }
      next = page.next_before;
      more.hidden = !next;
      empty.hidden = rows.children.length > 0;
    } catch (e) {
      showError(error, e);
    }
  }
  more.addEventListener("click", () => load(next));
  refresh.addEventListener("click", () => load(null));

  fill(root,
    h("div", { class: "title-row" },
      h("h1", { tabindex: -1 }, "Campaigns"),
      h("a", { href: "#/campaigns/new", class: "button" }, "New campaign")),
    error,
    h("div", { class: "table-wrap" },
      h("table", { id: "campaign-table" },
        h("thead", null, h("tr", null,
          ["Name", "Status", "Progress", "Cost so far", "Created"].map((t) => h("th", { scope: "col" }, t)))),
        rows)),
    empty,
    h("div", { class: "actions" }, refresh, more));
  load(null);
}

// --- launching from a CSV ---------------------------------------------------------------

function field(label, control, hint) {
  const id = control.id;
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null);
}

function rejectionTable(rejected) {
  return table("Rejected rows", ["Number", "Code", "Why"],
    rejected.map((r) => [r.phone_number || "(empty)", r.code, r.error]), { id: "rejections" });
}

export function newCampaignPage(root) {
  const error = errorBox();
  const name = h("input", { id: "c-name", name: "name", required: true, maxLength: 200 });
  const file = h("input", { id: "c-file", name: "file", type: "file", accept: ".csv,text/csv", required: true });
  const templateName = h("select", { id: "c-template", name: "template_name" },
    h("option", { value: "" }, "(write the text below)"));
  const templateText = h("textarea", { id: "c-text", name: "template", rows: 3 });
  const channel = h("select", { id: "c-channel", name: "channel" },
    h("option", { value: "sms" }, "SMS"), h("option", { value: "whatsapp" }, "WhatsApp"));
  const priority = h("select", { id: "c-priority", name: "priority" },
    ["normal", "urgent", "high", "low"].map((p) => h("option", { value: p }, p)));
  const sender = h("input", { id: "c-sender", name: "sender_id", maxLength: 32 });
  const when = h("input", { id: "c-when", name: "scheduled_at", type: "datetime-local" });
  const check = h("button", { type: "submit" }, "Check cost (dry run)");
  const result = h("section", { id: "dry-run", "aria-live": "polite", hidden: true });

  const form = h("form", { class: "stack", id: "campaign-form" },
    field("Name", name),
    field("Recipients (CSV file)", file,
      "A header row with a phone_number column, and one column per template variable."),
    field("Template", templateName),
    field("Or the message text", templateText, "Handlebars, e.g. Hi {{name}}! Used when no template is chosen."),
    h("div", { class: "row" }, field("Channel", channel), field("Priority", priority)),
    h("div", { class: "row" },
      field("Sender id (optional)", sender),
      field("Send at (optional, your local time)", when)),
    error,
    h("div", { class: "actions" }, check, h("a", { href: "#/campaigns", class: "button secondary" }, "Back")));

  // The request the dry run priced; Confirm sends exactly this one again.
  let checked = null;

  function query() {
    const q = {
      name: name.value.trim(),
      channel: channel.value,
      priority: priority.value,
      sender_id: sender.value.trim(),
    };
    if (templateName.value) q.template_name = templateName.value;
    else q.template = templateText.value;
    if (when.value) {
      const at = new Date(when.value);
      if (!Number.isNaN(at.getTime())) q.scheduled_at = at.toISOString();
    }
    return q;
  }

  function upload(q, dryRun, idempotencyKey) {
    return api("/campaigns/upload", {
      method: "POST",
      query: { ...q, dry_run: dryRun ? "true" : undefined },
      body: checked.file,
      contentType: "text/csv",
      headers: idempotencyKey ? { "Idempotency-Key": idempotencyKey } : undefined,
    });
  }

  // Any change after the dry run makes its price stale: ask for a new one.
  form.addEventListener("input", () => {
    if (checked) {
      checked = null;
      result.hidden = true;
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    const csv = file.files && file.files[0];
    if (!csv) {
      showError(error, new Error("Choose a CSV file with the recipients."));
      return;
    }
    if (!templateName.value && !templateText.value.trim()) {
      showError(error, new Error("Choose a template or write the message text."));
      return;
    }
    checked = { query: query(), file: csv, key: randomKey() };
    check.disabled = true;
    try {
      const dry = await upload(checked.query, true);
      showDryRun(dry);
    } catch (e) {
      checked = null;
      result.hidden = true;
      showError(error, e);
    } finally {
      check.disabled = false;
    }
  });

  function showDryRun(dry) {
    const confirm = h("button", { type: "button", id: "confirm-send" },
      `Confirm and send to ${formatNumber(dry.recipients_accepted)} recipients`);
    const confirmError = errorBox();
    confirm.addEventListener("click", async () => {
      if (!checked) return;
      confirm.disabled = true;
      showError(confirmError, null);
      try {
        // The same key on a retried click: Herald answers the first launch again.
        const created = await upload(checked.query, false, checked.key);
        location.hash = `#/campaigns/${encodeURIComponent(created.campaign_id)}`;
      } catch (e) {
        showError(confirmError, e);
        confirm.disabled = false;
      }
    });
    const rejected = Array.isArray(dry.rejected) ? dry.rejected : [];
    const byCode = Object.entries(dry.rejected_by_code || {})
      .map(([code, n]) => `${n} ${code}`).join(", ");
    fill(result,
      h("h2", { tabindex: -1, id: "dry-run-title" }, "Dry run: nothing was sent yet"),
      facts([
        ["Rows", formatNumber(dry.recipients_total)],
        ["Will be sent", formatNumber(dry.recipients_accepted)],
        ["Rejected", `${formatNumber(dry.rejected_count)}${byCode ? ` (${byCode})` : ""}`],
        ["Segments", formatNumber(dry.estimated_segments)],
        ["Estimated cost", h("span", { id: "dry-run-cost" }, money(dry.estimated_cost))],
        ["Starts", formatTime(dry.scheduled_at)],
      ]),
      rejected.length ? rejectionTable(rejected) : null,
      rejected.length < Number(dry.rejected_count || 0)
        ? h("p", { class: "muted" }, `The first ${rejected.length} rejected rows are shown.`)
        : null,
      confirmError,
      h("div", { class: "actions" }, confirm));
    result.hidden = false;
    result.querySelector("h2").focus();
  }

  fill(root, h("h1", { tabindex: -1 }, "New campaign"), form, result);
  api("/templates").then((list) => {
    for (const t of list.templates || []) {
      templateName.append(h("option", { value: t.name }, `${t.name} (${t.source})`));
    }
  }, (e) => showError(error, e));
}

// --- one campaign -----------------------------------------------------------------------

const FINAL = new Set(["completed", "canceled"]);

export function campaignPage(root, id) {
  const error = errorBox();
  const title = h("h1", { tabindex: -1 }, "Campaign");
  const status = h("span", { id: "campaign-status", class: "badge" }, "…");
  const reason = h("span", { class: "muted" });
  const progress = h("progress", { id: "campaign-progress", max: 1, value: 0 });
  const progressLabel = h("p", { id: "campaign-progress-text", "aria-live": "polite" });
  const numbers = h("div");
  const counters = h("div");
  const pause = h("button", { type: "button", id: "pause" }, "Pause");
  const resume = h("button", { type: "button", id: "resume" }, "Resume");
  const cancel = h("button", { type: "button", id: "cancel", class: "danger" }, "Cancel campaign");
  const rejections = h("section", { "aria-labelledby": "rej-title" },
    h("h2", { id: "rej-title" }, "Rejected rows"), h("p", { class: "muted" }, "Loading…"));
  const replies = h("section", { "aria-labelledby": "rep-title" },
    h("h2", { id: "rep-title" }, "Replies"), h("p", { class: "muted" }, "Loading…"));
  const path = `/campaigns/${encodeURIComponent(id)}`;
  let timer = null;
  let stopped = false;
  let polls = 0;
  // Live progress: the campaign's events from the event stream; polling alone if it fails.
  const live = h("span", { class: "muted", id: "campaign-live" }, "");
  const stream = new AbortController();
  let streaming = false;
  let refreshTimer = null;
  function refreshSoon(repliesToo) {
    if (repliesToo) loadReplies();
    if (refreshTimer || stopped) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      try {
        const c = await api(path);
        if (!stopped) render(c);
      } catch {
        // The next poll tries again and shows the error.
      }
    }, REFRESH_MS);
  }
  async function follow() {
    try {
      await followEvents({ campaign_id: id }, () => {
        streaming = true;
        live.textContent = "Live: updated as messages move.";
      }, (e) => refreshSoon(e.event === "message.inbound"), stream.signal);
    } catch {
      // Not available (or aborted): polling carries on alone.
    }
    streaming = false;
    if (!stopped) live.textContent = "Updated every few seconds.";
  }

  function render(c) {
    title.textContent = c.name;
    status.textContent = c.status;
    status.className = `badge s-${c.status}`;
    reason.textContent = c.pause_reason ? ` (${c.pause_reason.replaceAll("_", " ")})` : "";
    const k = c.counters || {};
    const accepted = Number(c.recipients_accepted || 0);
    const waiting = Number(k.queued || 0) + Number(k.sending || 0);
    const delivered = Number(k.delivered || 0) + Number(k.read || 0);
    const failed = ["failed", "undelivered", "expired"].reduce((s, x) => s + Number(k[x] || 0), 0);
    progress.max = Math.max(accepted, 1);
    progress.value = Math.max(accepted - waiting, 0);
    progressLabel.textContent = `${formatNumber(delivered)} of ${formatNumber(accepted)} delivered` +
      ` · ${formatNumber(failed)} failed · ${formatNumber(Number(k.canceled || 0))} canceled` +
      ` · ${formatNumber(waiting)} waiting`;
    fill(numbers, facts([
      ["Recipients", `${formatNumber(accepted)} of ${formatNumber(c.recipients_total)} rows`],
      ["Cost so far", h("span", { id: "cost-so-far" }, money(c.cost_so_far))],
      ["Estimated cost", money(c.estimated_cost)],
      ["Send rate", `${Number(c.send_rate || 0).toLocaleString()} messages/s`],
      ["Estimated completion", c.estimated_completion ? formatTime(c.estimated_completion) : "—"],
      ["Channel, priority", `${c.channel}, ${c.priority}`],
      ["Scheduled", formatTime(c.scheduled_at)],
      ["Started", formatTime(c.started_at)],
      ["Finished", formatTime(c.finished_at)],
    ]));
    const names = ["queued", "sending", "sent", "delivered", "read", "failed", "undelivered",
      "expired", "canceled", "rejected", "opted_out", "replies"];
    fill(counters, table("Messages by status", ["Status", "Messages"],
      names.map((n) => [n.replace("_", " "), formatNumber(k[n])]), { id: "campaign-counters" }));
    pause.disabled = !["running", "scheduled"].includes(c.status);
    resume.disabled = c.status !== "paused";
    cancel.disabled = FINAL.has(c.status);
  }

  async function loadRejections() {
    try {
      const r = await api(`${path}/rejections`, { query: { limit: 200 } });
      const list = r.rejections || [];
      fill(rejections, rejections.firstChild,
        list.length
          ? table(null, ["Row", "Number", "Code", "Why"],
            list.map((x) => [formatNumber(Number(x.row) + 1), x.phone_number || "(empty)", x.code, x.error]))
          : h("p", { class: "muted" }, "None: every row was accepted."),
        r.next_after !== null && r.next_after !== undefined
          ? h("p", { class: "muted" }, "The first 200 are shown.") : null);
    } catch (e) {
      fill(rejections, rejections.firstChild, h("p", { class: "error" }, e.message));
    }
  }

  async function loadReplies() {
    try {
      const r = await api(`${path}/replies`, { query: { limit: 50 } });
      const list = r.replies || [];
      fill(replies, replies.firstChild,
        list.length
          ? table(null, ["From", "Reply", "Received"], list.map((x) => [
            x.thread_id ? h("a", { href: `#/inbox/${encodeURIComponent(x.thread_id)}` }, x.phone_number) : x.phone_number,
            x.keyword ? `${x.body} (${x.keyword})` : x.body,
            formatTime(x.received_at)]))
          : h("p", { class: "muted" }, "No replies yet."));
    } catch (e) {
      fill(replies, replies.firstChild, h("p", { class: "error" }, e.message));
    }
  }

  async function poll() {
    let final = false;
    try {
      const c = await api(path);
      if (stopped) return;
      showError(error, null);
      render(c);
      final = FINAL.has(c.status);
      if (polls % 4 === 0) loadReplies();
      polls += 1;
    } catch (e) {
      if (!stopped) showError(error, e);
    }
    const every = final ? POLL_FINISHED_MS : streaming ? POLL_STREAMING_MS : POLL_MS;
    if (!stopped) timer = setTimeout(poll, every);
  }

  async function command(name, button) {
    if (name === "cancel" && !window.confirm("Cancel this campaign? Messages not yet sent are refunded.")) {
      return;
    }
    button.disabled = true;
    showError(error, null);
    try {
      render(await api(`${path}/${name}`, { method: "POST" }));
    } catch (e) {
      showError(error, e);
      button.disabled = false;
    }
  }
  const exportButton = h("button", { type: "button", class: "secondary" }, "Download results (CSV)");
  exportButton.addEventListener("click", async () => {
    showError(error, null);
    try {
      await download(`${path}/export`, `${id}.csv`);
    } catch (e) {
      showError(error, e);
    }
  });
  pause.addEventListener("click", () => command("pause", pause));
  resume.addEventListener("click", () => command("resume", resume));
  cancel.addEventListener("click", () => command("cancel", cancel));

  fill(root,
    h("p", null, h("a", { href: "#/campaigns" }, "← All campaigns")),
    title,
    h("p", null, "Status: ", status, reason),
    error,
    h("div", { class: "actions", role: "group", "aria-label": "Campaign controls" }, pause, resume, cancel),
    h("section", { class: "card wide", "aria-label": "Progress" },
      h("label", { for: "campaign-progress" }, "Progress"), progress, progressLabel, live, numbers),
    counters,
    h("p", { class: "actions" },
      h("a", { href: `#/messages?campaign_id=${encodeURIComponent(id)}` }, "This campaign's messages"),
      exportButton),
    rejections,
    replies);
  poll();
  follow();
  loadRejections();
  return () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(refreshTimer);
    stream.abort();
  };
}
