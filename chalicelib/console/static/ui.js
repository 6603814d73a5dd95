// Shared page machinery: the status line, action buttons, and problem (RFC 9457) rendering.
import { el } from "./dom.js";

let rerender = () => {};

export function setRerender(fn) { rerender = fn; }

export function status(message, isError = false) {
  const line = document.getElementById("status");
  line.textContent = message;
  line.className = isError ? "error" : "";
}

export function problemBox(err) {
  const problem = (err && err.problem) || {};
  const fields = Array.isArray(problem.errors) ? problem.errors : [];
  return el("div", { class: "problem", role: "alert" },
    el("strong", {}, `${err.status ? `${err.status} ` : ""}${problem.title || "Error"}`),
    el("p", {}, problem.detail || String(err.message || err)),
    fields.length ? el("ul", {}, fields.map((f) => el("li", {}, `${f.field}: ${f.message}`))) : null);
}

export function problemText(err) {
  const problem = (err && err.problem) || {};
  return `${err.status ? `${err.status} ` : ""}${problem.title || "Error"}: ${problem.detail || err.message}`;
}

// A button that runs `action` once at a time, reports its outcome on the status line, then re-renders.
export function actionButton(label, action, { done, name } = {}) {
  const button = el("button", { type: "button", "data-action": name || label.toLowerCase() }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    status(`${label}…`);
    try {
      const result = await action();
      status(done ? done(result) : `${label}: done.`);
      await rerender();
    } catch (err) {
      status(problemText(err), true);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

// Re-render the current page from scratch (after a filter or form changed what it shows).
export function reload() { window.dispatchEvent(new HashChangeEvent("hashchange")); }

// A status <select> whose choice is remembered for this tab under `storageKey` ("" = all).
export function statusFilter(current, values, storageKey) {
  const select = el("select", { "aria-label": "Status" },
    values.map((v) => el("option", { value: v, selected: v === current }, v || "all")));
  select.addEventListener("change", () => { sessionStorage.setItem(storageKey, select.value); reload(); });
  return select;
}
