// The inbox: conversations with the numbers that wrote in (unread counts first), and one
// conversation both ways. Opening a conversation marks what it shows as read.

import { api } from "./api.js";
import { badge, errorBox, fill, formatTime, h, showError } from "./dom.js";

export function inboxPage(root) {
  const error = errorBox();
  const list = h("ul", { class: "threads", id: "threads" });
  const empty = h("p", { class: "muted", hidden: true }, "No one has written in yet.");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older conversations");
  let next = null;

  async function load(before) {
    showError(error, null);
    try {
      const page = await api("/threads", { query: { before, limit: 50 } });
      if (!before) list.replaceChildren();
      for (const t of page.threads) {
        const unread = Number(t.unread_count || 0);
        list.append(h("li", { class: unread ? "unread" : "" },
          h("a", { href: `#/inbox/${encodeURIComponent(t.thread_id)}` },
            h("span", { class: "who" }, t.phone_number),
            h("span", { class: "muted" }, ` ${t.channel} · ${formatTime(t.last_message_at)}`),
            unread ? h("span", { class: "count" }, `${unread} unread`) : null,
            h("span", { class: "last" }, t.last_message))));
      }
      next = page.next_before;
      more.hidden = !next;
      empty.hidden = list.children.length > 0;
    } catch (e) {
      showError(error, e);
    }
  }
  more.addEventListener("click", () => load(next));
  fill(root, h("h1", { tabindex: -1 }, "Inbox"), error, list, empty, more);
  load(null);
}

export function threadPage(root, id) {
  const error = errorBox();
  const title = h("h1", { tabindex: -1 }, "Conversation");
  const meta = h("p", { class: "muted" });
  const log = h("ol", { class: "conversation", id: "conversation" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Later messages");
  const path = `/threads/${encodeURIComponent(id)}/messages`;
  let next = null;

  async function load(after) {
    showError(error, null);
    try {
      const page = await api(path, { query: { after, limit: 100 } });
      const t = page.thread;
      title.textContent = `Conversation with ${t.phone_number}`;
      meta.textContent = `${t.channel} · last message ${formatTime(t.last_message_at)}`;
      if (!after) log.replaceChildren();
      const unread = [];
      for (const m of page.messages) {
        if (m.direction === "inbound" && m.read === false) unread.push(m.message_id);
        log.append(h("li", { class: m.direction },
          h("p", { class: "body" }, m.body),
          h("p", { class: "muted" },
            m.direction === "inbound" ? "Received " : "Sent ", formatTime(m.at), " ",
            m.direction === "outbound" ? badge(m.status) : null,
            m.keyword ? ` keyword ${m.keyword.toUpperCase()}` : null,
            m.read === false ? h("strong", { class: "unread-mark" }, " unread") : null)));
      }
      next = page.next_after;
      more.hidden = !next;
      if (unread.length) {
        await api("/message/read", { method: "POST", body: { message_ids: unread } });
        log.querySelectorAll(".unread-mark").forEach((mark) => mark.remove());
      }
    } catch (e) {
      showError(error, e);
    }
  }
  more.addEventListener("click", () => load(next));
  fill(root,
    h("p", null, h("a", { href: "#/inbox" }, "← All conversations")),
    title, meta, error, log, more);
  load(null);
}
