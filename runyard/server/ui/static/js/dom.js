// DOM building without innerHTML (every value is text), and formatting helpers.

// Attributes h() sets, by name: all the UI itself uses. Anything else given to it (say a
// snapshot value that is an object and landed where attributes go) is dropped, so data
// never reaches innerHTML, inline handlers or style.
const ATTRS = new Set(["id", "title", "role", "type", "name", "value", "placeholder", "size",
  "min", "max", "step", "colspan", "rowspan", "tabindex", "inputmode", "for", "autocomplete",
  "hidden", "disabled", "checked", "selected", "open", "required", "readonly", "multiple"]);
// The style properties the UI sets (bar widths, colour swatches).
const STYLES = new Set(["width", "background"]);

/** ``href`` when it is relative or http(s); javascript:, data: and the like are dropped. */
export function safeHref(href) {
  const text = String(href);
  try {
    const url = new URL(text, window.location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? text : null;
  } catch {
    return null;
  }
}

function setAttr(el, k, v) {
  if (k.startsWith("on")) {
    // Only handlers the UI passes as functions; a string would be inline script.
    if (typeof v === "function") el.addEventListener(k.slice(2), v);
  } else if (typeof v === "function" || (typeof v === "object" && k !== "dataset" && k !== "style")) {
    // Objects and arrays are never attribute values.
  } else if (k === "dataset") {
    for (const [dk, dv] of Object.entries(v)) {
      if (dv !== null && dv !== undefined) el.dataset[dk] = String(dv);
    }
  } else if (k === "class") {
    el.classList.add(...String(v).split(/\s+/).filter(Boolean));
  } else if (k === "style") {
    for (const [sk, sv] of Object.entries(v)) {
      if (STYLES.has(sk) && (typeof sv === "string" || typeof sv === "number")) el.style[sk] = String(sv);
    }
  } else if (k === "href") {
    const href = safeHref(v);
    if (href !== null) el.setAttribute("href", href);
  } else if (ATTRS.has(k) || /^(aria|data)-[a-z0-9-]+$/.test(k)) {
    el.setAttribute(k, v === true ? "" : String(v));
  }
}

/**
 * h("a.cls#id", {href, onclick, dataset: {...}}, ...children) -> Element.
 * Attributes come from a whitelist (see ATTRS); children are elements or text, never HTML.
 */
export function h(tag, attrs, ...children) {
  const m = /^([a-z0-9]+)((?:[.#][\w-]+)*)$/i.exec(tag);
  if (!m) throw new Error(`bad tag ${tag}`);
  const el = document.createElement(m[1]);
  for (const part of m[2].match(/[.#][\w-]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs !== null && attrs !== undefined &&
      (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) setAttr(el, k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A finite number from an API value ("NaN"/"Infinity" strings stay non-finite). */
export function num(v) {
  if (typeof v === "number") return v;
  if (v === "NaN") return NaN;
  if (v === "Infinity") return Infinity;
  if (v === "-Infinity") return -Infinity;
  return null;
}

export function fmtNum(v) {
  const x = num(v);
  if (x === null) return "—";
  if (!Number.isFinite(x)) return String(v);
  if (Number.isInteger(x) && Math.abs(x) < 1e15) return x.toLocaleString("en-US");
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(3);
  return String(Number(x.toPrecision(4)));
}

export function fmtDuration(seconds) {
  const s = num(seconds);
  if (s === null || !Number.isFinite(s) || s < 0) return "—";
  if (s < 60) return `${Math.round(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.round(s % 60)).padStart(2, "0")}s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

/** "3m ago" for an ISO time; the absolute time is for a title attribute. */
export function fmtAge(iso, now = Date.now()) {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "—";
  const s = Math.max(0, (now - t) / 1000);
  return s < 5 ? "just now" : `${fmtDuration(s)} ago`;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "—" : d.toLocaleString();
}

export function fmtBytes(n) {
  if (typeof n !== "number") return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function badge(status) {
  return h("span.badge", { class: `badge st-${status}`, dataset: { status } }, status);
}

/** Show a message in the corner; notes fade after 4 s, errors after 12 s (or on ×). */
export function flash(message, kind = "error") {
  const box = document.getElementById("flash");
  const item = h(`div.${kind}`, h("span", message),
    h("button.link", { type: "button", onclick: () => item.remove(), "aria-label": "dismiss" },
      "×"));
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 12_000 : 4000);
}

export function section(title, ...body) {
  return h("section.panel", h("h2", title), ...body);
}

/** A table from column specs [{title, cell: row => node|text, class?}] and rows. */
export function table(columns, rows, rowAttrs) {
  return h("table.grid",
    h("thead", h("tr", columns.map((c) => h("th", { class: c.class }, c.title)))),
    h("tbody", rows.map((r) => h("tr", rowAttrs ? rowAttrs(r) : null,
      columns.map((c) => h("td", { class: c.class }, c.cell(r)))))));
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
