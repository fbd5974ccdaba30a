// Workers: capabilities, GPUs, slots in use, current runs, last heartbeat; drain/resume for
// operators. Refreshed every few seconds and on run status changes.

import { get, post } from "./api.js";
import { badge, clear, fmtAge, fmtNum, fmtTime, flash, h } from "./dom.js";
import { reloadLive } from "./live.js";

const REFRESH_MS = 5000;

function gpus(caps) {
  const list = (caps && caps.gpus) || [];
  if (!list.length) return "—";
  return h("ul.plain", list.map((g) => h("li", `${g.index ?? "?"}: ${g.name || "GPU"}` +
    (g.vram_gib !== undefined ? ` (${fmtNum(g.vram_gib)} GiB)` : ""))));
}

function labels(caps) {
  const entries = Object.entries((caps && caps.labels) || {});
  return entries.length ? entries.map(([k, v]) => h("span.chip.on", `${k}=${v}`)) : "—";
}

export async function render(main, { me }) {
  document.title = "Workers · Runyard";
  const tbody = h("tbody");
  const note = h("p.muted.small");
  const cols = ["Host", "State", "Last heartbeat", "System", "CPUs / RAM", "GPUs", "Slots", "Labels",
    "Current runs", ...(me.can.drain ? [""] : [])];
  main.append(h("h1", "Workers"), h("table.grid.workers", h("thead", h("tr", cols.map((c) => h("th", c)))),
    tbody), note);

  async function toggle(w, btn) {
    btn.disabled = true;
    const verb = w.drained ? "resume" : "drain";
    try {
      await post(`/v1/workers/${encodeURIComponent(w.host_id)}/${verb}`, {});
      flash(`${w.host_id}: ${verb === "drain" ? "drained" : "resumed"}`, "note");
      await load();
    } catch (err) {
      flash(`${verb} failed: ${err.message}`);
      btn.disabled = false;
    }
  }

  function row(w) {
    const c = w.capabilities || {};
    const state = [w.alive ? h("span.ok", "alive") : h("span.bad", "offline"),
      w.drained ? h("span.warn", " · drained") : null];
    const cells = [
      h("td", h("b", w.host_id), w.hostname && w.hostname !== w.host_id ? h("div.muted.small", w.hostname) : null),
      h("td", state),
      h("td", { title: fmtTime(w.last_seen_at), dataset: { seen: w.last_seen_at } }, fmtAge(w.last_seen_at)),
      h("td.small", [c.os, c.arch].filter(Boolean).join(" / ") || "—",
        c.python ? h("div.muted", `python ${c.python}`) : null,
        c.torch ? h("div.muted", `torch ${c.torch}`) : null,
        c.cuda_driver ? h("div.muted", `CUDA driver ${c.cuda_driver}`) : null),
      h("td", `${fmtNum(c.cpus)} CPUs`, h("div.muted.small", `${fmtNum(c.ram_gib)} GiB RAM`)),
      h("td.small", gpus(c)),
      h("td", `${w.active_attempts} / ${w.policy && w.policy.slots ? w.policy.slots : w.slots}`),
      h("td", labels(c)),
      h("td.small", w.current.length ? h("ul.plain", w.current.map((r) => h("li",
        h("a", { href: `/runs/${encodeURIComponent(r.run_id)}` }, r.name), " ", badge(r.status)))) : "idle"),
    ];
    if (me.can.drain) {
      const btn = h("button", { type: "button", dataset: { action: w.drained ? "resume" : "drain" } },
        w.drained ? "Resume" : "Drain");
      btn.addEventListener("click", () => toggle(w, btn));
      cells.push(h("td", btn));
    }
    return h("tr", { dataset: { host: w.host_id } }, cells);
  }

  async function load() {
    try {
      const got = await get("/v1/workers");
      clear(tbody, got.items.length ? got.items.map(row)
        : h("tr", h("td.muted", { colspan: cols.length }, "No worker has registered yet. Start one with runyard agent.")));
      note.textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      note.textContent = err.message;
    }
  }

  return reloadLive(load, REFRESH_MS);
}
