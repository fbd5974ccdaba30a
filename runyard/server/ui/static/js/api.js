// The /v1 API over fetch: the bearer token from localStorage, one error type, downloads.

const TOKEN_KEY = "runyard.token";

export class ApiError extends Error {
  constructor(status, type, message, field) {
    super(message);
    this.status = status;
    this.type = type;
    this.field = field;
  }
}

export function token() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

export function authHeaders(extra = {}) {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : { ...extra };
}

/** Query string from an object, leaving out null, undefined and "" values. */
export function qs(params) {
  const out = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== "") out.set(k, String(v));
  }
  const s = out.toString();
  return s ? `?${s}` : "";
}

async function errorOf(resp) {
  let type = "HTTPError";
  let message = `${resp.status} ${resp.statusText}`;
  let field = null;
  try {
    const body = await resp.json();
    if (body && body.error) {
      type = body.error.type || type;
      message = body.error.message || message;
      field = body.error.field || null;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(resp.status, type, message, field);
}

let onUnauthorized = null;

/** Called with the error whenever the server answers 401 (the token is missing or revoked). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** One API call; resolves to the JSON body (null for an empty answer), rejects with ApiError. */
export async function api(method, path, body, options = {}) {
  const init = { method, headers: authHeaders(), signal: options.signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "NetworkError", `cannot reach the server (${err.message})`, null);
  }
  if (!resp.ok) {
    const err = await errorOf(resp);
    if (resp.status === 401 && onUnauthorized && !options.quiet401) onUnauthorized(err);
    throw err;
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, params, options) => api("GET", path + qs(params), undefined, options);
export const post = (path, body, options) => api("POST", path, body ?? {}, options);

/** Save a blob (checkpoint or artifact) through fetch, so the bearer header goes along. */
export async function download(sha256, filename) {
  const resp = await fetch(`/v1/blobs/${encodeURIComponent(sha256)}`, { headers: authHeaders() });
  if (!resp.ok) throw await errorOf(resp);
  const blob = await resp.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename || sha256;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
