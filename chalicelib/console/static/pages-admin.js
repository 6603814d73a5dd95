// Webhook deliveries with replay (tenant) and tenants with plans (operator).
import { call, id, query } from "./api.js";
import { append, badge, el, table, when } from "./dom.js";
import { actionButton, statusFilter } from "./ui.js";

async function webhookConfig() {
  try {
    return await call("GET", "v1/webhook");
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

export async function webhook(view) {
  const state = sessionStorage.getItem("filter.deliveries") ?? "";
  const [config, page] = await Promise.all([webhookConfig(),
    call("GET", `v1/webhook/deliveries${query({ status: state, limit: 100 })}`)]);
  append(view, el("h1", {}, "Webhook deliveries"),
    config
      ? el("p", {}, "Delivering ", el("code", {}, config.event_types.length ? config.event_types.join(", ") : "every event type"),
        " to ", el("code", {}, config.url), " ",
        actionButton("Send test event", () => call("POST", "v1/webhook/test"),
          { done: (r) => `Test event ${r.delivered ? "delivered" : "not delivered"}: ${r.result}`, name: "webhook-test" }))
      : el("p", { class: "muted" }, "No webhook configured (PUT /v1/webhook)."),
    el("div", { class: "toolbar" }, "Status", statusFilter(state, ["", "pending", "delivered", "dead_letter"], "filter.deliveries")),
    table(["Created", "Event", "Status", "Attempts", "Replays", "Last answer", "Next attempt", ""],
      page.items.map((d) => el("tr", { "data-delivery-id": d.id },
        el("td", {}, when(d.created_at)),
        el("td", {}, d.event_type, el("div", { class: "muted" }, d.event_id)),
        el("td", { class: "delivery-status" }, badge(d.status)),
        el("td", {}, d.attempts), el("td", { class: "replays" }, d.replays),
        el("td", {}, d.last_status_code ?? "—", d.last_error ? el("div", { class: "muted" }, d.last_error) : null),
        el("td", {}, when(d.next_attempt_at)),
        el("td", { class: "actions" }, d.status !== "pending"
          ? actionButton("Replay", () => call("POST", `v1/webhook/deliveries/${id(d.id)}/replay`),
            { done: () => "Replay queued (same event id).", name: "replay" }) : null))),
      "No deliveries yet."));
}

// Plan names come from the public OpenAPI document (UpdateTenant.plan), not from a private endpoint.
async function planNames() {
  const doc = await call("GET", "v1/openapi.json");
  const plan = doc.components.schemas.UpdateTenant.properties.plan;
  const branch = (plan.anyOf || [plan]).find((b) => Array.isArray(b.enum));
  return branch ? branch.enum : [];
}

function tenantRow(tenant, plans) {
  const select = el("select", { "aria-label": `Plan of ${tenant.name}` },
    plans.map((p) => el("option", { value: p, selected: p === tenant.plan }, p)));
  const suspend = tenant.status === "active" ? "suspended" : "active";
  return el("tr", { "data-tenant-id": tenant.id },
    el("td", {}, tenant.name, el("div", { class: "muted" }, tenant.id)),
    el("td", {}, select, " ", actionButton("Set plan", () => call("PATCH", `v1/admin/tenants/${id(tenant.id)}`, { plan: select.value }),
      { done: (r) => `${r.name} is now on ${r.plan}.`, name: "set-plan" })),
    el("td", {}, badge(tenant.status)),
    el("td", {}, (tenant.own_domains || []).join(", ") || "—"),
    el("td", {}, when(tenant.created_at)),
    el("td", { class: "actions" }, actionButton(suspend === "active" ? "Activate" : "Suspend",
      () => call("PATCH", `v1/admin/tenants/${id(tenant.id)}`, { status: suspend }), { done: (r) => `${r.name}: ${r.status}.` })));
}

export async function tenants(view) {
  const [page, plans] = await Promise.all([call("GET", "v1/admin/tenants?limit=200"), planNames()]);
  append(view, el("h1", {}, "Tenants and plans"),
    el("p", { class: "muted" }, `Plans: ${plans.join(", ")}. New tenants: POST /v1/admin/tenants (the first API key is shown once).`),
    table(["Tenant", "Plan", "Status", "Own domains", "Created", ""], page.items.map((t) => tenantRow(t, plans)), "No tenants."));
}
