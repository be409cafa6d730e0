// Building the page from data. Everything the API answers goes into the DOM as text
// (`textContent`), never as markup, so a message body or a campaign name cannot inject HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Appends children (nodes, strings as text; null/false skipped) to `node`. */
function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function setAttributes(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.setAttribute("class", value);
    } else if (name in node && !(node instanceof SVGElement)) {
      node[name] = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

/** An HTML element: `h("p", {class: "x"}, "text", child)`. */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  return append(node, children);
}

/** An SVG element, as `h`. */
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttributes(node, attrs);
  return append(node, children);
}

/** Replaces everything inside `node`. */
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

function isLong(cell) {
  return typeof cell === "string" && cell.length > 40;
}

/** A table with a header row; `rows` are arrays of cells (text or nodes). */
export function table(caption, headers, rows, attrs) {
  return h("div", { class: "table-wrap" },
    h("table", attrs,
      caption ? h("caption", null, caption) : null,
      h("thead", null, h("tr", null, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", null, rows.map((cells) => h("tr", null, cells.map((c) => h("td", isLong(c) ? { class: "text" } : null, c))))),
    ),
  );
}

/** A definition list from [term, value] pairs. */
export function facts(pairs, attrs) {
  return h("dl", { class: "facts", ...attrs },
    pairs.map(([term, value]) => h("div", null, h("dt", null, term), h("dd", null, value))));
}

/** A paragraph for errors, announced to screen readers. */
export function errorBox() {
  return h("p", { class: "error", role: "alert", hidden: true });
}

export function showError(box, error) {
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.textContent = error.message || String(error);
  box.hidden = false;
}

/** A status shown as a small coloured label. */
export function badge(status) {
  return h("span", { class: `badge s-${String(status).replace(/[^a-z_]/g, "")}` }, status);
}

// Formatting. The browser's locale decides separators; times are shown in local time.

export function formatTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

export function formatNumber(n) {
  return Number(n || 0).toLocaleString();
}

/** Money with up to four decimals (message prices are fractions of a cent). */
export function formatMoney(amount, currency) {
  const n = Number(amount);
  if (!Number.isFinite(n)) return "—";
  const text = n.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 4 });
  return currency ? `${text} ${currency}` : text;
}

export function formatRate(rate) {
  return rate === null || rate === undefined ? "—" : `${(Number(rate) * 100).toFixed(1)} %`;
}

/** Random printable text for an `Idempotency-Key` (crypto.randomUUID needs HTTPS). */
export function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
