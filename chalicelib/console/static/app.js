// Console shell: sign-in, navigation (hash routes, so no server routes or sessions), loading and error
// states, and a periodic refresh of the pages that watch live state (mailbox sync, arriving messages).
import { session, call, ApiError } from "./api.js";
import { el, replace } from "./dom.js";
import { problemBox, setRerender, status } from "./ui.js";
import * as mail from "./pages-mail.js";
import * as pairing from "./pages-pairing.js";
import * as admin from "./pages-admin.js";

const TENANT_NAV = [["#/mailboxes", "Mailboxes"], ["#/signals", "Signals"], ["#/rules", "Rules"],
  ["#/audit", "Audit log"], ["#/webhook", "Webhook deliveries"]];
const OPERATOR_NAV = [["#/tenants", "Tenants and plans"]];
const ROUTES = [
  [/^#\/mailboxes$/, mail.mailboxes, 5000],
  [/^#\/mailboxes\/([^/]+)\/messages$/, mail.messages, 5000],
  [/^#\/messages\/([^/]+)$/, mail.message, 0],
  [/^#\/signals$/, pairing.signals, 0],
  [/^#\/rules$/, pairing.rules, 0],
  [/^#\/audit$/, pairing.audit, 0],
  [/^#\/webhook$/, admin.webhook, 0],
  [/^#\/tenants$/, admin.tenants, 0],
];

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
  const items = session.isOperator ? OPERATOR_NAV : TENANT_NAV;
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
  const match = ROUTES.map(([pattern, page, every]) => [location.hash.match(pattern), page, every]).find(([m]) => m);
  if (!match) { replace(view, el("p", {}, "No such page. "), el("a", { href: home() }, "Start over")); return; }
  const [found, page, every] = match;
  const mine = ++generation;
  if (!quiet) replace(view, el("p", { class: "loading" }, "Loading…"));
  const target = el("div", { class: "page" });
  try {
    await page(target, ...found.slice(1).map(decodeURIComponent));
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
    showSignIn(err instanceof ApiError ? `${err.status} ${err.problem.title || ""}: ${err.message}` : String(err));
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
