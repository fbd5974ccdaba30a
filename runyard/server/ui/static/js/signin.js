// One-time sign-in links (/login#code=...), as `runyard up` prints them: the code is traded
// once for a token of this browser's own, kept like a token typed into the sign-in form.
// The code rides in the fragment, which no request line or Referer carries, and leaves the
// address bar and the history before anything else happens.

import { post, setToken } from "./api.js";
import { clear, h } from "./dom.js";

/** The code in this page's fragment (null when none), removed from the URL at once. */
export function takeCode() {
  if (location.pathname !== "/login" || !location.hash) return null;
  const code = new URLSearchParams(location.hash.slice(1)).get("code");
  if (code === null) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return code;
}

/** Trade the code for a token and keep it; rejects with the server's ApiError. */
export async function exchange(code) {
  const out = await post("/v1/signin", { code }, { quiet401: true });
  setToken(out.token);
  return out;
}

/** The page that says why a link did not sign in, and what to do instead. */
export function refusedPage(main, err) {
  document.title = "Sign-in link refused · Runyard";
  clear(main, h("section.login",
    h("h1", "Sign-in link refused"),
    h("p.error", err.message),
    h("p.muted", "A sign-in link works once, for a few minutes. On the server's machine, ",
      h("code", "runyard token link"), " prints a new one."),
    h("p", h("a", { href: "/login" }, "Sign in with a token"))));
}
