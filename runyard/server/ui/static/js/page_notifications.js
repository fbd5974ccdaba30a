// The delivery log (GET /v1/notifications): every notification the server queued for a
// channel, with its status, attempts and last error; filtered by run, channel and status
// (`?run_id=&channel=&status=`, so a filtered view can be shared). And the channels, as
// anyone who reads runs may list them: names, kinds and redacted URLs.

import { get } from "./api.js";
import { badge, clear, fmtAge, fmtTime, h, section } from "./dom.js";
import { reloadLive } from "./live.js";

const PAGE = 50;
const REFRESH_MS = 5000;
const STATUSES = ["pending", "delivered", "failed"];

function filtersFrom(query) {
  return { run_id: query.get("run_id") || "", channel: query.get("channel") || "",
    status: STATUSES.includes(query.get("status")) ? query.get("status") : "" };
}

function runCell(n) {
  if (!n.run_id) return h("span.muted", "(no run)");
  const run = n.payload && typeof n.payload.run === "object" && n.payload.run ? n.payload.run : {};
  const name = typeof run.name === "string" && run.name ? run.name : n.run_id;
  return [h("a", { href: `/runs/${encodeURIComponent(n.run_id)}` }, name),
    h("div.muted.small.mono", n.run_id)];
}

function kindCell(n) {
  const d = n.payload && typeof n.payload.details === "object" && n.payload.details
    ? n.payload.details : {};
  const what = typeof d.rule === "string" ? `rule ${d.rule}` : null;
  return [n.kind, what ? h("div.muted.small", what) : null];
}

function whenCell(n) {
  const sub = n.status === "delivered" && n.delivered_at ? `delivered ${fmtTime(n.delivered_at)}`
    : n.status === "pending" && n.next_attempt_at ? `next try ${fmtTime(n.next_attempt_at)}`
      : n.updated_at ? `updated ${fmtTime(n.updated_at)}` : null;
  return [h("span", { title: fmtTime(n.created_at) }, fmtAge(n.created_at)),
    sub ? h("div.muted.small", sub) : null];
}

export async function render(main, { query }) {
  document.title = "Notifications · Runyard";
  const filters = filtersFrom(query);
  const cursors = [null];
  let pageIndex = 0;

  const run = h("input", { name: "run_id", placeholder: "run id", value: filters.run_id, size: 28,
    "aria-label": "run id" });
  const channel = h("input", { name: "channel", placeholder: "channel", value: filters.channel,
    size: 14, "aria-label": "channel" });
  const status = h("select", { name: "status", "aria-label": "status" },
    h("option", { value: "" }, "any status"), STATUSES.map((s) => h("option", { value: s }, s)));
  status.value = filters.status;
  const form = h("form.filters", { onsubmit: (ev) => {
    ev.preventDefault();
    filters.run_id = run.value.trim();
    filters.channel = channel.value.trim();
    filters.status = status.value;
    const q = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", q.toString() ? `/notifications?${q}` : "/notifications");
    cursors.length = 1;
    pageIndex = 0;
    load();
  } }, run, channel, status, h("button.primary", { type: "submit" }, "Filter"));
  const cols = ["Queued", "Channel", "Run", "Kind", "Status", "Attempts", "Last error"];
  const tbody = h("tbody");
  const note = h("span.muted.small");
  const prev = h("button", { type: "button", onclick: () => { pageIndex -= 1; load(); } }, "← Newer");
  const next = h("button", { type: "button", onclick: () => { pageIndex += 1; load(); } }, "Older →");
  const channels = h("div");
  main.append(h("h1", "Notifications"),
    h("p.muted", "What the server sent to channels (newest first), and how each delivery went."),
    form,
    h("table.grid.deliveries", h("thead", h("tr", cols.map((c) => h("th", c)))), tbody),
    h("div.pager", prev, note, next),
    section("Channels", channels));

  function row(n) {
    return h("tr", { dataset: { id: n.id, status: n.status, channel: n.channel } },
      h("td.small", whenCell(n)),
      h("td", h("b", n.channel)),
      h("td.name", runCell(n)),
      h("td", kindCell(n)),
      h("td", badge(n.status)),
      h("td.num", String(n.attempts)),
      h("td.small.error.lasterror", n.last_error || ""));
  }

  async function load() {
    let got;
    try {
      got = await get("/v1/notifications", { run_id: filters.run_id, channel: filters.channel,
        status: filters.status, before_id: cursors[pageIndex], limit: PAGE });
    } catch (err) {
      clear(tbody, h("tr", h("td.error", { colspan: cols.length }, err.message)));
      return;
    }
    cursors[pageIndex + 1] = got.next_before_id;
    clear(tbody, got.items.length ? got.items.map(row)
      : h("tr", h("td.muted", { colspan: cols.length }, pageIndex ? "No older deliveries."
        : "No notifications match. Rules send them with notify:<channel>; runyard channels test sends one.")));
    prev.disabled = pageIndex === 0;
    next.disabled = !got.next_before_id;
    note.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  async function loadChannels() {
    try {
      const got = await get("/v1/channels");
      clear(channels, got.items.length ? h("table.grid", h("thead", h("tr",
        ["Name", "Kind", "URL", "Signed"].map((c) => h("th", c)))),
      h("tbody", got.items.map((c) => h("tr", { dataset: { channel: c.name } },
        h("td", h("b", c.name)), h("td", c.kind), h("td.mono.small", c.url || "—"),
        h("td", c.signed ? "yes" : "no")))))
        : h("p.muted", "No channels. An operator adds one with runyard channels add."));
    } catch (err) {
      clear(channels, h("p.error", err.message));
    }
  }

  loadChannels();
  return reloadLive(load, REFRESH_MS);
}
