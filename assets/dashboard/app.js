// Herald's dashboard: sign-in with an API key, then pages chosen by the address's fragment
// (#/overview, #/campaigns, #/campaigns/new, #/campaigns/<id>, #/messages, #/inbox,
// #/inbox/<thread>), so the browser's back button and bookmarks work without a server route
// per page.

import { api, forgetKey, storedKey, storeKey } from "./api.js";
import { campaignListPage, campaignPage, newCampaignPage, setCurrency } from "./campaigns.js";
import { inboxPage, threadPage } from "./inbox.js";
import { messagesPage } from "./messages.js";
import { overviewPage } from "./overview.js";

const signIn = document.getElementById("sign-in");
const signInForm = document.getElementById("sign-in-form");
const signInError = document.getElementById("sign-in-error");
const keyInput = document.getElementById("api-key");
const nav = document.getElementById("nav");
const signOut = document.getElementById("sign-out");
const page = document.getElementById("page");

/** Stops the current page's timers when another page is shown. */
let leave = null;

function showSignIn(message) {
  if (leave) leave();
  leave = null;
  forgetKey();
  nav.hidden = true;
  signOut.hidden = true;
  page.hidden = true;
  page.replaceChildren();
  signIn.hidden = false;
  signInError.textContent = message || "";
  signInError.hidden = !message;
  keyInput.value = "";
  keyInput.focus();
}

/** Checks a key by reading the account's balance with it (which also gives the currency). */
async function check(key) {
  const balance = await api("/account/balance", { key });
  setCurrency(balance.currency);
}

signInForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  const button = signInForm.querySelector("button");
  button.disabled = true;
  signInError.hidden = true;
  try {
    await check(key);
    storeKey(key);
    keyInput.value = "";
    signIn.hidden = true;
    if (!location.hash || location.hash === "#/") location.hash = "#/overview";
    route();
  } catch (e) {
    const message = e.status === 401
      ? "That API key was not accepted. Check it and try again."
      : `Signing in failed: ${e.message}`;
    signInError.textContent = message;
    signInError.hidden = false;
    keyInput.focus();
  } finally {
    button.disabled = false;
  }
});

signOut.addEventListener("click", () => {
  showSignIn("");
  history.replaceState(null, "", "/");
});

// Any request answered 401 (the key was revoked meanwhile) leads back to sign-in.
window.addEventListener("herald:signed-out", () => {
  showSignIn("Your API key is no longer accepted. Sign in again.");
});

/** The page for the current address: [nav entry, render(root) → optional cleanup]. */
function pageFor(hash) {
  const [path, search] = hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(search || "");
  switch (parts[0]) {
    case "campaigns":
      if (parts[1] === "new") return ["campaigns", (root) => newCampaignPage(root)];
      if (parts[1]) return ["campaigns", (root) => campaignPage(root, parts[1])];
      return ["campaigns", (root) => campaignListPage(root)];
    case "messages":
      return ["messages", (root) => messagesPage(root, params)];
    case "inbox":
      if (parts[1]) return ["inbox", (root) => threadPage(root, parts[1])];
      return ["inbox", (root) => inboxPage(root)];
    default:
      return ["overview", (root) => overviewPage(root)];
  }
}

function route() {
  if (!storedKey()) {
    showSignIn("");
    return;
  }
  if (leave) leave();
  const [name, render] = pageFor(location.hash);
  for (const link of nav.querySelectorAll("a[data-page]")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  signIn.hidden = true;
  nav.hidden = false;
  signOut.hidden = false;
  page.hidden = false;
  leave = render(page) || null;
  // Keyboard and screen-reader users land on the new page's heading.
  const heading = page.querySelector("h1");
  if (heading) heading.focus({ preventScroll: true });
  document.title = heading ? `${heading.textContent} · Herald` : "Herald";
}

// Only "#/…" addresses are pages; the skip link moves focus without leaving the page.
window.addEventListener("hashchange", () => {
  if (location.hash.startsWith("#/") || !location.hash) route();
});
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("main").focus();
});

// A tab that already signed in (a reload) keeps its key; its currency is read again.
if (storedKey()) {
  check(storedKey()).then(route, (e) => {
    if (e.status === 401) showSignIn("Your API key is no longer accepted. Sign in again.");
    else route();
  });
} else {
  showSignIn("");
}
