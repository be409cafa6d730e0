// Talking to Herald's API with the signed-in key. The key lives in sessionStorage: this tab
// keeps it until it is closed or the user signs out; other tabs and later visits do not.

const KEY_NAME = "herald.api_key";
const BASE = "/api/messaging";

export function storedKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
}

/** An API answer that is not a success, with Herald's `code` and sentence. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/**
 * Herald's errors are `{"success": false, "error": "<sentence>", "code": "…", "field": "…"}`;
 * `{"error": {"code", "message"}}` is read too, and anything else (a proxy's HTML page) is
 * reported by its HTTP status.
 */
function errorFrom(status, body) {
  const nested = body && typeof body.error === "object" && body.error !== null ? body.error : null;
  const code = (nested ? nested.code : body && body.code) || `http_${status}`;
  let sentence = nested ? nested.message : body && body.error;
  if (typeof sentence !== "string" || !sentence) {
    sentence = `The server answered HTTP ${status}.`;
  }
  const field = (nested ? nested.field : body && body.field) || null;
  const where = field ? ` (field: ${field})` : "";
  return new ApiError(status, code, `${sentence}${where} [${code}]`, field);
}

/**
 * Calls `path` under /api/messaging. `query` entries that are empty are left out. Resolves
 * with the parsed JSON answer; rejects with an ApiError. A 401 also fires `herald:signed-out`
 * so the app can ask for a key again.
 */
export async function api(path, { method = "GET", query, body, contentType, headers, key } = {}) {
  const url = new URL(BASE + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const sendHeaders = { Accept: "application/json", ...headers };
  sendHeaders.Authorization = `Bearer ${key || storedKey() || ""}`;
  let sendBody = body;
  if (body !== undefined && contentType === undefined) {
    sendHeaders["Content-Type"] = "application/json";
    sendBody = JSON.stringify(body);
  } else if (contentType) {
    sendHeaders["Content-Type"] = contentType;
  }
  let response;
  try {
    response = await fetch(url, { method, headers: sendHeaders, body: sendBody });
  } catch (e) {
    throw new ApiError(0, "network", `Herald could not be reached (${e.message}).`, null);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = errorFrom(response.status, data);
    if (response.status === 401 && !key) {
      window.dispatchEvent(new CustomEvent("herald:signed-out", { detail: error }));
    }
    throw error;
  }
  return data;
}

/**
 * Follows the account's event stream (`GET /events`, Server-Sent Events) with the key in the
 * Authorization header (EventSource cannot send one, so this reads the stream with fetch).
 * Calls `onOpen()` once it is open and `onEvent(event)` for each event's JSON; resolves when
 * the stream ends; rejects when it cannot be opened or `signal` aborts.
 */
export async function followEvents(query, onOpen, onEvent, signal) {
  const url = new URL(`${BASE}/events`, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value) url.searchParams.set(name, value);
  }
  const response = await fetch(url, {
    headers: { Accept: "text/event-stream", Authorization: `Bearer ${storedKey() || ""}` },
    signal,
  });
  if (!response.ok || !response.body) {
    throw new ApiError(response.status, `http_${response.status}`, "The event stream did not open.", null);
  }
  onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // Frames end with a blank line; `data:` lines carry the event's JSON.
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (!data) continue;
      try {
        onEvent(JSON.parse(data));
      } catch {
        // A frame that is not JSON (a comment, a keep-alive) carries no event.
      }
    }
  }
}

/**
 * Downloads `path` (under /api/messaging) as the file `filename`: fetched with the key (a
 * plain link cannot send it), then handed to the browser as a blob.
 */
export async function download(path, filename) {
  const response = await fetch(new URL(BASE + path, location.origin), {
    headers: { Authorization: `Bearer ${storedKey() || ""}` },
  });
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    throw errorFrom(response.status, body);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
