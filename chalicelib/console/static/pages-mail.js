// Mailboxes (status and sync), a mailbox's messages, and one message.
import { call, download, id, query } from "./api.js";
import { append, badge, el, table, when } from "./dom.js";
import { actionButton } from "./ui.js";

const OAUTH_TYPES = new Set(["gmail", "outlook"]);

function counts(sync) {
  const c = sync.counts || {};
  return `${c.imported ?? 0} / ${c.skipped ?? 0} / ${c.removed ?? 0}`;
}

function lastError(sync) {
  const error = sync.last_error || sync.push_error;
  return error ? el("span", { class: "error", title: error.at || "" }, `${error.code}: ${error.detail}`) : "—";
}

function consentCell(mailbox) {
  const cell = el("span", { class: "consent" });
  const button = actionButton("Re-consent", async () => {
    const result = await call("POST", `v1/mailboxes/${id(mailbox.id)}/authorize`, {});
    append(cell, el("a", { href: result.authorize_url, target: "_blank", rel: "noopener noreferrer" }, "Open consent page"));
    if (result.admin_consent_url) {
      append(cell, " · ", el("a", { href: result.admin_consent_url, target: "_blank", rel: "noopener noreferrer" },
        "Administrator consent"));
    }
    return result;
  }, { done: () => "Consent link ready: open it in the mailbox owner's browser.", name: "authorize" });
  return [button, cell];
}

function mailboxRow(mailbox, sync) {
  const base = `v1/mailboxes/${id(mailbox.id)}`;
  return el("tr", { "data-mailbox-id": mailbox.id },
    el("td", {}, el("a", { href: `#/mailboxes/${id(mailbox.id)}/messages` }, mailbox.name), el("br"),
      el("span", { class: "muted" }, mailbox.email)),
    el("td", {}, mailbox.type),
    el("td", { class: "status" }, badge(mailbox.status), mailbox.status_reason ? el("div", { class: "muted" }, mailbox.status_reason) : null),
    el("td", { class: "stage" }, sync.error ? el("span", { class: "error" }, sync.error.message) : badge(sync.stage),
      sync.throttled_until ? el("div", { class: "muted" }, `until ${when(sync.throttled_until)}`) : null),
    el("td", {}, when(sync.last_success_at)),
    el("td", { class: "counts" }, sync.error ? "—" : counts(sync)),
    el("td", {}, sync.error ? "—" : lastError(sync)),
    el("td", {}, when(sync.push_expires_at)),
    el("td", { class: "actions" },
      actionButton("Refresh", () => call("POST", `${base}/refresh`),
        { done: (r) => (r.coalesced ? "A sync was already queued." : "Sync queued."), name: "refresh" }),
      actionButton("Test connection", () => call("POST", `${base}/test`),
        { done: (r) => `${r.ok ? "Connection OK" : "Connection failed"}: ${r.detail} (status ${r.status})`, name: "test" }),
      OAUTH_TYPES.has(mailbox.type) ? consentCell(mailbox) : null));
}

export async function mailboxes(view) {
  const list = await call("GET", "v1/mailboxes?limit=200");
  const syncs = await Promise.all(list.items.map((m) => call("GET", `v1/mailboxes/${id(m.id)}/sync`).catch((error) => ({ error }))));
  append(view, el("h1", {}, "Mailboxes"),
    el("p", { class: "muted" }, "Updates every few seconds. Counts are imported / skipped / removed at source."),
    table(["Mailbox", "Type", "Status", "Sync stage", "Last success", "Counts", "Last error", "Push expires", ""],
      list.items.map((m, i) => mailboxRow(m, syncs[i])),
      "No mailboxes yet: connect one with POST /v1/mailboxes (see /docs)."));
}

function address(a) {
  if (!a) return "—";
  return a.name ? `${a.name} <${a.email}>` : a.email;
}

function links(items) {
  if (!items || !items.length) return el("span", { class: "muted" }, "unpaired");
  return el("ul", { class: "links" }, items.map((link) => el("li", {},
    el("code", {}, `${link.type} ${link.id}`), link.source ? ` (${link.source})` : "",
    link.reason ? el("div", { class: "muted" }, link.reason) : null)));
}

export async function messages(view, mailboxId) {
  const [mailbox, page] = await Promise.all([
    call("GET", `v1/mailboxes/${id(mailboxId)}`),
    call("GET", `v1/mailboxes/${id(mailboxId)}/messages${query({ limit: 100 })}`),
  ]);
  append(view, el("p", {}, el("a", { href: "#/mailboxes" }, "← Mailboxes")),
    el("h1", {}, `Messages of ${mailbox.name}`),
    el("p", { class: "muted" }, `${mailbox.email} · ${mailbox.status} · newest first; new mail appears as it syncs.`),
    table(["Date", "Folder", "From", "Subject", "Snippet", "Paired with"],
      page.items.map((m) => el("tr", { "data-message-id": m.id },
        el("td", {}, when(m.date)),
        el("td", {}, m.folder),
        el("td", {}, address(m.from)),
        el("td", { class: "subject" }, el("a", { href: `#/messages/${id(m.id)}` }, m.subject ?? "(no subject)")),
        el("td", { class: "snippet" }, m.snippet ?? (m.skipped_reason ? `skipped: ${m.skipped_reason}` : "")),
        el("td", {}, links(m.links)))),
      "No messages yet: the first import runs within seconds of connecting."),
    page.next_cursor ? el("p", { class: "muted" }, "Showing the newest 100.") : null);
}

// Inline (`cid:`) images. The API points them at their attachments' download URLs, which answer only with the
// Authorization header an <img> cannot send, under the API's public base URL (which need not be this page's
// origin), and the frame's CSP admits only same-origin and data: images. So each one is fetched here, by its
// path relative to this page and with the key, and its src becomes a data: URL of its declared raster type (no
// SVG). At most INLINE_MAX images of INLINE_MAX_BYTES each; the rest stay blank, as does one that fails.
const INLINE_MAX = 20;
const INLINE_MAX_BYTES = 5 * 1024 * 1024;
const INLINE_TYPES = /^image\/(png|jpeg|jpg|gif|webp|bmp|avif)$/i;

function dataUrl(blob, type) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(new Blob([blob], { type }));
  });
}

async function withInlineImages(m) {
  const source = (a) => `src="${a.download_url}"`;    // as the sanitizer writes it (the URL needs no escaping)
  const inline = (m.attachments || []).filter((a) => a.content_id && INLINE_TYPES.test(a.content_type || "")
    && a.size <= INLINE_MAX_BYTES && m.html.includes(source(a))).slice(0, INLINE_MAX);
  const urls = await Promise.all(inline.map((a) => download(`v1/messages/${id(m.id)}/attachments/${a.index}`)
    .then((blob) => dataUrl(blob, a.content_type.toLowerCase())).catch(() => null)));
  return inline.reduce((html, a, i) => (urls[i] ? html.split(source(a)).join(`src="${urls[i]}"`) : html), m.html);
}

export async function message(view, messageId) {
  const m = await call("GET", `v1/messages/${id(messageId)}`);
  const body = el("div", { class: "body" });
  if (m.html) {
    // The API sanitizes HTML (nh3); it is still shown in a sandbox (no scripts, forms, popups or same-origin
    // access) through srcdoc, which never parses it into this document.
    const frame = el("iframe", { class: "mail-html", sandbox: "", referrerpolicy: "no-referrer", title: "Message HTML" });
    frame.srcdoc = await withInlineImages(m);
    append(body, el("h2", {}, "HTML (sanitized)"), frame);
  }
  if (m.text) append(body, el("h2", {}, "Text"), el("pre", { class: "text" }, m.text));
  append(view, el("p", {}, el("a", { href: `#/mailboxes/${id(m.mailbox_id)}/messages` }, "← Messages")),
    el("h1", { class: "subject" }, m.subject ?? "(no subject)"),
    el("dl", { class: "meta" },
      el("dt", {}, "From"), el("dd", {}, address(m.from)),
      el("dt", {}, "To"), el("dd", {}, (m.to || []).map(address).join(", ") || "—"),
      el("dt", {}, "Cc"), el("dd", {}, (m.cc || []).map(address).join(", ") || "—"),
      el("dt", {}, "Date"), el("dd", {}, when(m.date)),
      el("dt", {}, "Folder"), el("dd", {}, `${m.folder} (${m.direction})`),
      el("dt", {}, "Paired with"), el("dd", {}, links(m.links)),
      el("dt", {}, "Attachments"), el("dd", {}, (m.attachments || []).map((a) => `${a.filename || "(unnamed)"} (${a.content_type}, ${a.size} B)`).join(", ") || "—"),
      m.parse_errors && m.parse_errors.length ? [el("dt", {}, "Parse errors"), el("dd", {}, m.parse_errors.join("; "))] : null),
    body);
}
