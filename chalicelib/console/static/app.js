// Console shell: sign-in, navigation (hash routes, so no server routes or sessions), loading and error
// states, and a periodic refresh of the pages that watch live state (mailbox sync, arriving messages).
import { session, call, ApiError } from "./api.js";
import { el, replace } from "./dom.js";
import { problemBox, problemText, setRerender, status } from "./ui.js";
import * as mail from "./pages-mail.js";
import * as pairing from "./pages-pairing.js";
import * as admin from "./pages-admin.js";

// Who may open a page: "tenant" (a tenant key, also acting as a CRM user), "admin" (a tenant key without
// X-User-Id: the API answers these routes only for the tenant itself, 403 for a user) or "operator" (the
// operator key). A page of another role is not called at all: its 401/403 would only say the key is wrong.
const ROUTES = [
  [/^#\/mailboxes$/, mail.mailboxes, 5000, "tenant"],
  [/^#\/mailboxes\/([^/]+)\/messages$/, mail.messages, 5000, "tenant"],
  [/^#\/messages\/([^/]+)$/, mail.message, 0, "tenant"],
  [/^#\/signals$/, pairing.signals, 0, "tenant"],
  [/^#\/rules$/, pairing.rules, 0, "admin"],
  [/^#\/audit$/, pairing.audit, 0, "admin"],
  [/^#\/webhook$/, admin.webhook, 0, "admin"],
  [/^#\/tenants$/, admin.tenants, 0, "operator"],
];
const NAV = [["#/mailboxes", "Mailboxes", "tenant"], ["#/signals", "Signals", "tenant"], ["#/rules", "Rules", "admin"],
  ["#/audit", "Audit log", "admin"], ["#/webhook", "Webhook deliveries", "admin"],
  ["#/tenants", "Tenants and plans", "operator"]];
const NOT_AVAILABLE = {
  operator: "This page is not available with a tenant key: tenants and plans need the operator key.",
  admin: "This page is not available while acting as a CRM user (X-User-Id): the API serves it only to the tenant "
    + "itself. Sign in without a user to open it.",
  tenant: "This page is not available with the operator key: sign in with a tenant API key.",
};

function allowed(who) {
  if (session.isOperator) return who === "operator";
  return who === "tenant" || (who === "admin" && !session.user);
}

// The page's parameters, percent-decoded; null when one is malformed or a dot segment ("." and ".." are
// never ids, and a URL would climb out of the path with them).
function params(found) {
  try {
    const values = found.slice(1).map(decodeURIComponent);
    return values.some((v) => v === "." || v === "..") ? null : values;
  } catch {
    return null;
  }
}

const view = document.getElementById("view");
const form = document.getElementById("signin");
let timer = null;
let generation = 0;

function home() { return session.isOperator ? "#/tenants" : "#/mailboxes"; }

function showSignIn(message) {
  clearTimeout(timer);
  form.hidden = false;
  view.replaceChildren();
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("who").textContent = "";
  const error = document.getElementById("signin-error");
  error.hidden = !message;
  error.textContent = message || "";
}

function showShell() {
  form.hidden = true;
  const nav = document.getElementById("nav");
  const items = NAV.filter(([, , who]) => allowed(who));
  replace(nav, items.map(([href, label]) => el("a", { href, class: location.hash.startsWith(href) ? "active" : "" }, label)));
  nav.hidden = false;
  document.getElementById("signout").hidden = false;
  document.getElementById("who").textContent = session.isOperator ? "operator"
    : `tenant key${session.user ? ` · acting as ${session.user}` : ""}`;
}

async function render({ quiet = false } = {}) {
  clearTimeout(timer);
  if (!session.key) { showSignIn(); return; }
  if (!location.hash || location.hash === "#") { location.hash = home(); return; }
  showShell();
  const match = ROUTES.map(([pattern, ...rest]) => [location.hash.match(pattern), ...rest]).find(([m]) => m);
  const args = match && params(match[0]);
  if (!args) { replace(view, el("p", {}, "No such page. "), el("a", { href: home() }, "Start over")); return; }
  const [, page, every, who] = match;
  if (!allowed(who)) { replace(view, el("p", {}, NOT_AVAILABLE[who], " "), el("a", { href: home() }, "Start over")); return; }
  const mine = ++generation;
  if (!quiet) replace(view, el("p", { class: "loading" }, "Loading…"));
  const target = el("div", { class: "page" });
  try {
    await page(target, ...args);
    if (mine !== generation) return;
    replace(view, target);
  } catch (err) {
    if (mine !== generation) return;
    if (err instanceof ApiError && err.status === 401) {
      session.clear();
      showSignIn("The key was refused (401): sign in again.");
      return;
    }
    if (!quiet) replace(view, problemBox(err));
    else status(`Refresh failed: ${err.message}`, true);
  }
  if (every && mine === generation) timer = setTimeout(() => render({ quiet: true }), every);
}

setRerender(() => render({ quiet: true }));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = form.elements.key.value.trim();
  const user = form.elements.user.value.trim();
  session.save(key, user);
  form.elements.key.value = "";
  try {
    await call("GET", session.isOperator ? "v1/admin/tenants?limit=1" : "v1/mailboxes?limit=1");
  } catch (err) {
    session.clear();
    showSignIn(err instanceof ApiError ? problemText(err) : String(err));
    return;
  }
  status("Signed in.");
  if (location.hash === home()) render(); else location.hash = home();
});

document.getElementById("signout").addEventListener("click", () => {
  session.clear();
  status("Signed out.");
  location.hash = "";
  showSignIn();
});

window.addEventListener("hashchange", () => { status(""); render(); });
render();
