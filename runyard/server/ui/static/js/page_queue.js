// Queue: queued runs in the order workers take them, each with why it is not running yet.

import { get } from "./api.js";
import { clear, fmtAge, fmtTime, h } from "./dom.js";
import { reloadLive } from "./live.js";

const REFRESH_MS = 10_000;

function needs(c) {
  if (!c) return "—";
  const out = [];
  if (c.require_cuda) out.push("CUDA");
  else if (c.prefer_cuda) out.push("prefers CUDA");
  if (c.gpus) out.push(`${c.gpus} GPU`);
  if (c.min_vram_gib) out.push(`≥${c.min_vram_gib} GiB VRAM`);
  if (c.min_ram_gib) out.push(`≥${c.min_ram_gib} GiB RAM`);
  if (c.min_cpus && c.min_cpus > 1) out.push(`≥${c.min_cpus} CPUs`);
  if (c.allowed_hosts && c.allowed_hosts.length) out.push(`hosts ${c.allowed_hosts.join(",")}`);
  for (const [k, v] of Object.entries(c.labels || {})) out.push(`${k}=${v}`);
  return out.join(" · ") || "any host";
}

const opened = new Set(); // run ids whose explanation is unfolded (kept across refreshes)

function why(runId, explain) {
  if (!explain) return "—";
  const blocked = explain.workers.filter((w) => !w.eligible || w.state.length);
  return h("details", { open: opened.has(runId), ontoggle: (ev) => {
    if (ev.target.open) opened.add(runId); else opened.delete(runId);
  } }, h("summary", explain.summary),
    blocked.length ? h("ul.plain.small", blocked.map((w) => h("li", h("b", w.host_id), ": ",
      [...w.unmet, ...w.state].join("; ")))) : h("p.small.muted", "every worker is eligible and ready"));
}

export async function render(main) {
  document.title = "Queue · Runyard";
  const tbody = h("tbody");
  const note = h("p.muted.small");
  const cols = ["#", "Run", "Priority", "Waiting", "Needs", "Why not running yet"];
  main.append(h("h1", "Queue"), h("p.muted", "Workers take the highest priority first, then the oldest."),
    h("table.grid.queue", h("thead", h("tr", cols.map((c) => h("th", c)))), tbody), note);

  async function load() {
    try {
      const got = await get("/v1/queue", { limit: 100 });
      clear(tbody, got.items.length ? got.items.map(({ position, run, explain }) =>
        h("tr", { dataset: { runId: run.id } },
          h("td", position),
          h("td", h("a", { href: `/runs/${encodeURIComponent(run.id)}` }, run.name),
            h("div.muted.small", run.project)),
          h("td", run.priority),
          h("td", { title: fmtTime(run.queued_at || run.created_at) }, fmtAge(run.queued_at || run.created_at)),
          h("td.small", needs(run.constraints)),
          h("td.small.why", why(run.id, explain))))
        : h("tr", h("td.muted", { colspan: cols.length }, "The queue is empty.")));
      note.textContent = got.total > got.items.length
        ? `showing the first ${got.items.length} of ${got.total} queued runs` : `${got.total} queued`;
    } catch (err) {
      note.textContent = err.message;
    }
  }

  return reloadLive(load, REFRESH_MS);
}
