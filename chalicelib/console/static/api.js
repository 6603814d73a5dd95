// The public API from the browser. The key lives in sessionStorage (this tab only, gone when it closes),
// travels only in the Authorization header of same-origin requests, and never in a URL or a log line.

const KEY = "mailbridge.key";
const USER = "mailbridge.user";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  get user() { return sessionStorage.getItem(USER) || ""; },
  get isOperator() { return (this.key || "").startsWith("mbo_"); },
  save(key, user) {
    sessionStorage.setItem(KEY, key);
    if (user) sessionStorage.setItem(USER, user); else sessionStorage.removeItem(USER);
  },
  clear() { sessionStorage.removeItem(KEY); sessionStorage.removeItem(USER); },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// A header value must be a ByteString (Fetch Standard, "Headers"): fetch() refuses anything else before any
// request is made, which would read as a network error. Keys are printable ASCII, user ids ASCII letters,
// digits and ._:@- (the API checks the exact rule and answers 400).
const PRINTABLE = /^[\x21-\x7e]+$/;

function checkSession() {
  if (!PRINTABLE.test(session.key || "")) {
    throw new ApiError(0, { title: "Not an API key", detail: "An API key is printable ASCII without spaces "
      + "(mbk_… or mbo_… exactly as it was shown); check what was pasted." });
  }
  if (session.user && !PRINTABLE.test(session.user)) {
    throw new ApiError(0, { title: "Invalid user", detail: "X-User-Id must be 1-128 characters of letters, "
      + "digits and ._:@-" });
  }
}

// `path` is relative to the page ("v1/..."), so the console also works under an API Gateway stage prefix.
export async function call(method, path, body) {
  checkSession();
  const headers = { Accept: "application/json", Authorization: `Bearer ${session.key}` };
  if (session.user && !session.isOperator) headers["X-User-Id"] = session.user;
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, { title: "Network error", detail: "The API did not answer; is it running?" });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { detail: text.slice(0, 300) }; }
  }
  if (!response.ok) throw new ApiError(response.status, data || {});
  return data;
}

// The bytes of a binary route (an attachment) as a Blob, with the same key and user headers as `call`.
export async function download(path) {
  checkSession();
  const headers = { Accept: "*/*", Authorization: `Bearer ${session.key}` };
  if (session.user && !session.isOperator) headers["X-User-Id"] = session.user;
  let response;
  try {
    response = await fetch(path, { method: "GET", headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" });
  } catch (err) {
    throw new ApiError(0, { title: "Network error", detail: "The API did not answer; is it running?" });
  }
  if (!response.ok) throw new ApiError(response.status, {});
  return response.blob();
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// One path segment: percent-encoded, and never "." or ".." — a URL resolves those as dot segments (also
// written %2e; WHATWG URL Standard, "single-dot URL path segment"), so `v1/messages/..` would call `v1/`.
export function id(value) {
  const text = String(value);
  if (text === "." || text === "..") throw new ApiError(0, { title: "Invalid id", detail: `"${text}" is not an id.` });
  return encodeURIComponent(text);
}
