// Runs: filters, keyset pages of 50, live progress bars from the event stream.

import { get } from "./api.js";
import { badge, clear, debounce, fmtAge, fmtNum, fmtTime, h } from "./dom.js";
import { subscribe } from "./live.js";
import { ACTIVE, STATUSES, alertMark, etaOf, keyMetrics, progressBar, stalledMark } from "./runs_common.js";

const PAGE = 50;
const FIELDS = ["id", "name", "project", "status", "attempt", "host_id", "created_at", "started_at",
  "ended_at", "progress", "progress_updated_at", "stalled", "owner", "termination_reason",
  "rule_hits"];
const MAX_COMPARE = 10;

function filtersFrom(query) {
  return { status: query.get("status") || "", project: query.get("project") || "",
    name: query.get("name") || "" };
}

function apiStatus(value) {
  return value === "active" ? [...ACTIVE].join(",") : value;
}

export async function render(main, { query }) {
  document.title = "Runs · Runyard";
  const filters = filtersFrom(query);
  const cursors = [null];
  let pageIndex = 0;
  const rows = new Map(); // run id -> {run, eta, tr}
  const checked = new Set();
  const etas = new Map();

  const status = h("select", { name: "status", "aria-label": "status" },
    h("option", { value: "" }, "any status"), h("option", { value: "active" }, "active"),
    STATUSES.map((s) => h("option", { value: s }, s)));
  status.value = filters.status;
  const project = h("input", { name: "project", placeholder: "project", value: filters.project, size: 14 });
  const name = h("input", { name: "name", placeholder: "name contains", value: filters.name, size: 18 });
  const compare = h("button", { type: "button", disabled: true, onclick: () => {
    location.href = `/compare?runs=${[...checked].map(encodeURIComponent).join(",")}`;
  } }, "Compare");
  const form = h("form.filters", { onsubmit: (ev) => {
    ev.preventDefault();
    filters.status = status.value;
    filters.project = project.value.trim();
    filters.name = name.value.trim();
    const q = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", q.toString() ? `/?${q}` : "/");
    cursors.length = 1;
    pageIndex = 0;
    load();
  } }, status, project, name, h("button.primary", { type: "submit" }, "Filter"), h("span.spacer"), compare);
  const tbody = h("tbody");
  const summary = h("span.muted.small");
  const prev = h("button", { type: "button", onclick: () => { pageIndex -= 1; load(); } }, "← Newer");
  const next = h("button", { type: "button", onclick: () => { pageIndex += 1; load(); } }, "Older →");
  const head = ["", "Name", "Status", "Progress", "Host", "Metrics", "Project", "Age"];
  main.append(h("h1", "Runs"), form,
    h("table.grid.runs", h("thead", h("tr", head.map((t) => h("th", t)))), tbody),
    h("div.pager", prev, summary, next));

  function updateCompare() {
    compare.disabled = checked.size < 2 || checked.size > MAX_COMPARE;
    compare.textContent = checked.size ? `Compare (${checked.size})` : "Compare";
    compare.title = checked.size > MAX_COMPARE ? `at most ${MAX_COMPARE} runs` : "pick 2 to 10 runs";
  }

  function cells(run) {
    const eta = etaOf(run.progress, etas.get(run.id));
    const box = h("input", { type: "checkbox", "aria-label": `select ${run.name}`,
      checked: checked.has(run.id), onchange: (ev) => {
        if (ev.target.checked) checked.add(run.id); else checked.delete(run.id);
        updateCompare();
      } });
    return [
      h("td", box),
      h("td.name", h("a", { href: `/runs/${encodeURIComponent(run.id)}` }, run.name),
        h("div.muted.small.mono", run.id)),
      h("td.status", badge(run.status), stalledMark(run.stalled), alertMark(run.rule_hits),
        run.termination_reason && run.termination_reason !== run.status
          ? h("div.muted.small", run.termination_reason) : null),
      h("td.prog", progressBar(run.progress, run.status, eta),
        run.progress && run.progress.step !== undefined
          ? h("div.muted.small", `step ${fmtNum(run.progress.step)}` +
            (run.progress.total_steps ? ` / ${fmtNum(run.progress.total_steps)}` : "") +
            (run.progress.epoch !== undefined ? ` · epoch ${fmtNum(run.progress.epoch)}` : ""))
          : null),
      h("td.host", run.host_id || "—"),
      h("td.metrics.small", keyMetrics(run.progress)),
      h("td", run.project),
      h("td.age", { title: fmtTime(run.created_at), dataset: { created: run.created_at } },
        fmtAge(run.created_at)),
    ];
  }

  function draw(run) {
    const entry = rows.get(run.id);
    if (!entry) return;
    entry.run = run;
    clear(entry.tr, cells(run));
  }

  async function load() {
    const params = { status: apiStatus(filters.status), project: filters.project,
      name_like: filters.name ? (/[%_]/.test(filters.name) ? filters.name : `%${filters.name}%`) : "",
      limit: PAGE, after_id: cursors[pageIndex], fields: FIELDS.join(",") };
    let page;
    try {
      page = await get("/v1/runs", params);
    } catch (err) {
      clear(tbody, h("tr", h("td.error", { colspan: head.length }, err.message)));
      return;
    }
    cursors[pageIndex + 1] = page.next_after_id;
    rows.clear();
    clear(tbody);
    for (const run of page.items) {
      const tr = h("tr", { dataset: { runId: run.id } });
      rows.set(run.id, { run, tr });
      tbody.append(tr);
      draw(run);
    }
    if (!page.items.length) {
      tbody.append(h("tr", h("td.muted", { colspan: head.length },
        pageIndex ? "No older runs." : "No runs match. Submit one with runyard submit.")));
    }
    prev.disabled = pageIndex === 0;
    next.disabled = !page.next_after_id;
    const first = pageIndex * PAGE + 1;
    summary.textContent = page.items.length
      ? `runs ${first}–${first + page.items.length - 1}` : "";
  }

  async function refreshRun(id) {
    try {
      const run = await get(`/v1/runs/${encodeURIComponent(id)}`);
      if (run.progress && run.progress.eta_seconds !== undefined) etas.set(id, run.progress.eta_seconds);
      draw(run);
    } catch {
      // deleted meanwhile: the next page load drops it
    }
  }

  const reloadFirstPage = debounce(() => { if (pageIndex === 0) load(); }, 800);
  const stream = subscribe({
    onFrame(event, data) {
      if (!data || !data.run_id) return;
      const entry = rows.get(data.run_id);
      if (event === "progress") {
        if (!entry) return;
        etas.set(data.run_id, data.eta_seconds);
        draw({ ...entry.run, status: data.status, attempt: data.attempt, progress: data.progress,
          stalled: data.stalled, progress_updated_at: data.progress_updated_at });
      } else if (entry) {
        refreshRun(data.run_id);
      } else {
        reloadFirstPage();
      }
    },
  });
  const ageTimer = setInterval(() => {
    for (const td of tbody.querySelectorAll("td.age")) td.textContent = fmtAge(td.dataset.created);
  }, 10_000);
  updateCompare();
  await load();
  return () => {
    stream.close();
    clearInterval(ageTimer);
  };
}
