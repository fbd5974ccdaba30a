// Boot: find out who we are (GET /v1/whoami), then draw the page the path names.
// Pages are modules with render(main, ctx) returning an optional cleanup function.

import { ApiError, get, setToken, setUnauthorizedHandler, token } from "./api.js";
import { clear, flash, h } from "./dom.js";
import { onConnectionChange } from "./live.js";
import { exchange, refusedPage, takeCode } from "./signin.js";

const ROUTES = [
  [/^\/$/, "runs", () => import("./page_runs.js")],
  [/^\/runs\/([^/]+)$/, "runs", () => import("./page_run.js")],
  [/^\/compare$/, "compare", () => import("./page_compare.js")],
  [/^\/workers$/, "workers", () => import("./page_workers.js")],
  [/^\/queue$/, "queue", () => import("./page_queue.js")],
  [/^\/notifications$/, "notifications", () => import("./page_notifications.js")],
];

const main = document.getElementById("main");
let cleanup = null;

function showWho(me) {
  const who = document.getElementById("who");
  const out = document.getElementById("logout");
  if (!me) {
    clear(who);
    out.hidden = true;
    return;
  }
  clear(who, h("span", me.name), " ", h("span.role", { dataset: { role: me.role } }, me.role));
  out.hidden = !me.auth;
}

function loginPage(message) {
  if (cleanup) cleanup();
  cleanup = null;
  showWho(null);
  document.title = "Sign in · Runyard";
  const input = h("input#token", { type: "password", name: "token", autocomplete: "current-password",
    placeholder: "ry_…", required: true, size: 48, "aria-label": "token" });
  const error = h("p.error", message || "");
  const form = h("form.login", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      if (!value) {
        error.textContent = "Enter a token.";
        return;
      }
      setToken(value);
      try {
        const me = await get("/v1/whoami", null, { quiet401: true });
        if (!me.can.read) {
          setToken("");
          error.textContent = `A ${me.role} token cannot use the web UI; use a viewer, user or operator token.`;
          return;
        }
        if (location.pathname === "/login") history.replaceState(null, "", "/");
        boot();
      } catch (err) {
        setToken("");
        error.textContent = err instanceof ApiError && err.status === 401
          ? "That token is not valid (unknown or revoked)." : err.message;
      }
    },
  }, h("h1", "Sign in"),
  h("p.muted", "This server needs a token. Open the sign-in link ", h("code", "runyard up"),
    " printed (or one from ", h("code", "runyard token link"), "), or create a token with ",
    h("code", "runyard token create --role viewer --name NAME"), "."),
  h("label", { for: "token" }, "Token"), input,
  h("button.primary", { type: "submit" }, "Sign in"), error);
  clear(main, form);
  input.focus();
}

async function boot() {
  const code = takeCode();
  if (code !== null) {
    try {
      await exchange(code);
    } catch (err) {
      showWho(null);
      refusedPage(main, err);
      return;
    }
    history.replaceState(null, "", "/");
  }
  let me;
  try {
    me = await get("/v1/whoami", null, { quiet401: true });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      loginPage(token() ? "Your token was refused (unknown or revoked); sign in again." : "");
      return;
    }
    clear(main, h("p.error", `Cannot load the UI: ${err.message}`));
    return;
  }
  if (!me.can.read || location.pathname === "/login") {
    loginPage(me.can.read ? "" : `A ${me.role} token cannot use the web UI.`);
    return;
  }
  showWho(me);
  const path = location.pathname;
  const route = ROUTES.find(([re]) => re.test(path));
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", Boolean(route) && a.dataset.nav === route[1]);
  }
  if (!route) {
    clear(main, h("p.error", `No page at ${path}.`), h("a", { href: "/" }, "Runs"));
    return;
  }
  const params = route[0].exec(path).slice(1).map(decodeURIComponent);
  try {
    const page = await route[2]();
    if (cleanup) cleanup();
    clear(main);
    cleanup = (await page.render(main, { me, params, query: new URLSearchParams(location.search) })) || null;
  } catch (err) {
    clear(main, h("p.error", err.message));
  }
}

setUnauthorizedHandler(() => loginPage("Your token was refused (unknown or revoked); sign in again."));
document.getElementById("logout").addEventListener("click", () => {
  setToken("");
  loginPage("Signed out.");
});
onConnectionChange((on, streams) => {
  const dot = document.getElementById("live");
  dot.hidden = !streams;
  dot.classList.toggle("off", !on);
  dot.title = on ? "live updates: connected" : "live updates: reconnecting";
});
window.addEventListener("unhandledrejection", (ev) => {
  if (ev.reason && ev.reason.name !== "AbortError") flash(String(ev.reason.message || ev.reason));
});
boot();
