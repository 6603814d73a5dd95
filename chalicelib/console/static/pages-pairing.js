// Pairing suggestions (signals), scanner rules and the audit trail with undo.
import { call, id, query } from "./api.js";
import { append, badge, el, json, table, when } from "./dom.js";
import { actionButton, problemText, reload, status, statusFilter } from "./ui.js";


export async function signals(view) {
  const state = sessionStorage.getItem("filter.signals") ?? "open";
  const page = await call("GET", `v1/signals${query({ status: state, limit: 100 })}`);
  append(view, el("h1", {}, "Signals"),
    el("div", { class: "toolbar" }, "Status", statusFilter(state, ["open", "accepted", "dismissed", "undone"], "filter.signals")),
    table(["Suggested", "Message", "Record", "Reason", "Matcher", "Confidence", "Status", ""],
      page.items.map((s) => el("tr", { "data-signal-id": s.id },
        el("td", {}, when(s.created_at)),
        el("td", {}, el("a", { href: `#/messages/${id(s.message_id)}` }, s.message_id)),
        el("td", {}, el("code", {}, `${s.record.type || ""} ${s.record.id || ""}`), s.record.name ? ` ${s.record.name}` : ""),
        el("td", {}, s.reason), el("td", {}, s.matcher), el("td", {}, Number(s.confidence).toFixed(2)),
        el("td", {}, badge(s.status)),
        el("td", { class: "actions" }, s.status === "open" ? [
          actionButton("Accept", () => call("POST", `v1/signals/${id(s.id)}/accept`), { done: () => "Accepted: the message is paired." }),
          actionButton("Dismiss", () => call("POST", `v1/signals/${id(s.id)}/dismiss`), { done: () => "Dismissed." }),
        ] : null))),
      state === "open" ? "No open suggestions (mailboxes in pairing mode \"signal\" create them)." : "None."));
}

const RULE_TEMPLATE = { name: "Newsletters are not leads", position: 100, enabled: true,
  conditions: { auto_reply: true }, actions: [{ type: "skip" }] };

export async function rules(view) {
  const page = await call("GET", "v1/rules");
  const editor = el("textarea", { rows: 8, cols: 80, spellcheck: "false", "aria-label": "New rule (JSON)" }, JSON.stringify(RULE_TEMPLATE, null, 2));
  const create = el("button", { type: "button" }, "Create rule");
  create.addEventListener("click", async () => {
    let body;
    try { body = JSON.parse(editor.value); } catch (err) { status(`Not JSON: ${err.message}`, true); return; }
    try {
      await call("POST", "v1/rules", body);
      status("Rule created.");
      reload();
    } catch (err) { status(problemText(err), true); }
  });
  append(view, el("h1", {}, "Scanner rules"), el("p", { class: "muted" }, "Rules run in ascending position on every new message."),
    table(["Position", "Name", "Mailbox", "Enabled", "Conditions", "Actions", ""],
      page.items.map((r) => el("tr", { "data-rule-id": r.id },
        el("td", {}, r.position), el("td", {}, r.name), el("td", {}, r.mailbox_id || "every mailbox"),
        el("td", {}, r.enabled ? "yes" : "no"), el("td", {}, json(r.conditions)), el("td", {}, json(r.actions)),
        el("td", { class: "actions" },
          actionButton(r.enabled ? "Disable" : "Enable", () => call("PATCH", `v1/rules/${id(r.id)}`, { enabled: !r.enabled })),
          actionButton("Delete", () => call("DELETE", `v1/rules/${id(r.id)}`), { done: () => "Rule deleted." })))),
      "No rules."),
    el("h2", {}, "New rule"), el("p", { class: "muted" }, "The request body of POST /v1/rules (fields: /docs#post_v1_rules)."),
    editor, el("div", {}, create));
}

// The entries POST /v1/audit/{id}/undo can undo (docs/api.md, "Pairing"); any other answers 409.
const UNDOABLE = new Set(["link.created", "signal.created", "record.created", "ticket.reopened"]);

export async function audit(view) {
  const page = await call("GET", `v1/audit${query({ limit: 100 })}`);
  append(view, el("h1", {}, "Audit log"), el("p", { class: "muted" }, "Every automatic pairing action, newest first; undo is itself recorded."),
    table(["When", "Action", "Actor", "Reason", "Message", "Record", "Undone", ""],
      page.items.map((a) => el("tr", { "data-audit-id": a.id },
        el("td", {}, when(a.created_at)), el("td", {}, a.action), el("td", {}, a.actor), el("td", {}, a.reason || "—"),
        el("td", {}, a.message_id ? el("a", { href: `#/messages/${id(a.message_id)}` }, a.message_id) : "—"),
        el("td", {}, a.entity_type ? el("code", {}, `${a.entity_type} ${a.entity_id}`) : "—"),
        el("td", {}, a.undone_by ? `by ${a.undone_by}` : a.undo_of ? `undoes ${a.undo_of}` : "—"),
        el("td", { class: "actions" }, UNDOABLE.has(a.action) && !a.undone_by && !a.undo_of
          ? actionButton("Undo", () => call("POST", `v1/audit/${id(a.id)}/undo`), { done: () => "Undone." }) : null))),
      "No automatic actions yet."));
}
