// One run: header with role-aware actions, live progress, charts, events, logs, files,
// where it ran and its config.

import { get } from "./api.js";
import { badge, clear, debounce, fmtDuration, fmtNum, fmtTime, h, section, table } from "./dom.js";
import { subscribe } from "./live.js";
import { RunCharts, isSys, sysGroups, tagsOf } from "./run_charts.js";
import { RateChart } from "./run_rate.js";
import { deleteControl } from "./run_delete.js";
import { EventsPanel, FilesPanel, LogPanel } from "./run_panels.js";
import { RuleMarks, RulesPanel } from "./run_rules.js";
import { ACTIVE, actionBar, alertMark, etaOf, percentOf, progressBar, stalledMark } from "./runs_common.js";

const CHART_EVERY_MS = 3000;
const LOG_EVERY_MS = 2000;

// Values may come from a snapshot, where any JSON can stand: always text (null attributes,
// so an object is never taken for them), objects spelled as JSON.
function kv(pairs) {
  return h("dl.kv", pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", null, k),
      h("dd", null, typeof v === "object" && !(v instanceof Node) ? JSON.stringify(v) : v)]));
}

function progressFacts(p, eta) {
  if (!p) return h("p.muted", "No progress reported yet.");
  const rate = p.rate && p.rate.value !== undefined
    ? `${fmtNum(p.rate.value)} ${p.rate.units || ""}`.trim() : null;
  const pct = percentOf(p);
  return kv([
    ["step", p.step !== undefined ? `${fmtNum(p.step)}${p.total_steps ? ` / ${fmtNum(p.total_steps)}` : ""}` : null],
    ["epoch", p.epoch !== undefined ? `${fmtNum(p.epoch)}${p.total_epochs ? ` / ${fmtNum(p.total_epochs)}` : ""}` : null],
    ["percent", pct === null ? null : `${pct.toFixed(1)}%`],
    ["phase", p.phase], ["rate", rate], ["ETA", eta === null ? null : fmtDuration(eta)],
    ["message", p.message], ["updated", fmtTime(p.updated_at)],
    ...Object.entries(p.metrics || {}).slice(0, 12).map(([k, v]) => [k, fmtNum(v)]),
  ]);
}

export async function render(main, { me, params }) {
  const runId = params[0];
  // The tags are asked for alongside the run: the charts wait on them, not on the run.
  const tags = tagsOf(runId);
  tags.catch(() => {});
  let run;
  try {
    run = await get(`/v1/runs/${encodeURIComponent(runId)}`);
  } catch (err) {
    main.append(h("h1", "Run"), h("p.error", err.message), h("a", { href: "/" }, "← all runs"));
    return null;
  }
  document.title = `${run.name} · Runyard`;
  const header = h("div.runhead");
  const progress = h("section.panel.progresspanel");
  const info = h("div.cols");
  main.append(h("p.small", h("a", { href: "/" }, "← all runs")), header, progress);
  const rate = new RateChart(main, runId);
  const rules = new RulesPanel(main, runId);
  const charts = new RunCharts(main, runId);
  const system = new RunCharts(main, runId, { title: "System", accept: isSys,
    groups: sysGroups, empty: "No system metrics recorded." });
  // Rule hits become marks on the chart of their tag: from the events (every hit) and from
  // each rule's last hit (one older than the events loaded).
  const marks = new RuleMarks((list) => charts.setMarks(list));
  const lower = h("div.cols");
  main.append(lower);
  const left = h("div"), right = h("div");
  lower.append(left, right);
  const events = new EventsPanel(left, runId, (ev) => {
    if (ev.kind === "rule") marks.add({ ...ev.details, attempt: ev.attempt });
  });
  const logs = new LogPanel(right, runId, run.attempt);
  const files = new FilesPanel(main, runId);
  main.append(info);

  // Kept across redraws while the run stays active or ended, so a live update does not
  // close a confirmation the user has open.
  let del = null, delActive = null;
  // Nothing asks the server about the run while its deletion is on the way (a live event
  // would have the page fetch it again), nor after: the answer would be a 404. Live frames
  // are still taken; a deletion that fails has the page catch up.
  let paused = false;
  const deleting = {
    sending() { paused = true; },
    failed() { paused = false; refetch(); },
    deleted,
  };
  function deleted() {
    stopLive();
    document.title = "Run deleted · Runyard";
    clear(main, h("p.small", h("a", { href: "/" }, "← all runs")), h("h1", "Run deleted"),
      h("p", `Run ${run.name} (${run.id}) and everything it recorded are gone.`));
  }

  function drawHeader() {
    const active = ACTIVE.has(run.status);
    if (delActive !== active) {
      del = deleteControl(me, run, deleting);
      delActive = active;
    }
    clear(header, h("div",
      h("h1", run.name, " ", badge(run.status), stalledMark(run.stalled), alertMark(run.rule_hits)),
      h("div.muted.small.mono", run.id),
      h("div.small", `project ${run.project}` + (run.version ? ` · version ${run.version}` : "") +
        (run.owner ? ` · owner ${run.owner}` : "") + ` · attempt ${run.attempt}/${run.max_attempts ?? "?"}`)),
    h("span.spacer"),
    actionBar(me, run, (r) => { run = { ...run, ...r }; drawHeader(); refetch(); }), del);
  }

  function drawProgress(p, serverEta, status) {
    const eta = etaOf(p, serverEta);
    clear(progress, h("h2", "Progress"), progressBar(p, status, eta), progressFacts(p, ACTIVE.has(status) ? eta : null));
  }

  function drawRules() {
    rules.draw(run.rules);
    for (const r of run.rules || []) if (r.last_hit) marks.add(r.last_hit);
  }

  // Where the latest attempt ran, as its holder reported it (the run's own workdir is what
  // it asked for, which an agent resolves against its directory).
  function ranIn(attempts) {
    for (let i = attempts.length - 1; i >= 0; i--) if (attempts[i].workdir) return attempts[i].workdir;
    return null;
  }

  function drawInfo() {
    const attempts = run.attempts || [];
    const explain = run.explain ? section("Why it is waiting",
      h("p", run.explain.summary),
      run.explain.workers.length ? table([
        { title: "Worker", cell: (w) => w.host_id },
        { title: "Eligible", cell: (w) => (w.eligible ? "yes" : "no") },
        { title: "Unmet", cell: (w) => w.unmet.join("; ") || "—" },
        { title: "State", cell: (w) => w.state.join("; ") || "ready" },
      ], run.explain.workers) : null) : null;
    clear(info,
      h("div", explain, section("Where it ran", kv([
        ["executor", run.executor], ["host", run.host_id || "—"],
        ["work dir", ranIn(attempts) || run.workdir],
        ["artifact store", run.artifact_store || "—"], ["archived", run.archived ? "yes" : "no"],
        ["created", fmtTime(run.created_at)], ["started", fmtTime(run.started_at)],
        ["ended", run.ended_at ? fmtTime(run.ended_at) : null],
        ["termination", run.termination_reason], ["exit code", run.exit_code],
      ]), attempts.length ? table([
        { title: "#", cell: (a) => a.number },
        { title: "Host", cell: (a) => a.host_id },
        { title: "Claimed", cell: (a) => fmtTime(a.claimed_at) },
        { title: "Ended", cell: (a) => (a.ended_at ? fmtTime(a.ended_at) : "active") },
        { title: "Reason", cell: (a) => a.termination_reason || "—" },
        { title: "Exit", cell: (a) => a.exit_code ?? "—" },
      ], attempts) : null)),
      h("div", section("Config", h("pre.json", JSON.stringify(run.config, null, 2))),
        section("Constraints", h("pre.json", JSON.stringify(run.constraints, null, 2))),
        run.command ? section("Command", h("pre.json", JSON.stringify(run.command))) : null,
        run.notes ? section("Notes", h("p", run.notes)) : null));
  }

  async function refetch() {
    if (paused) return;
    try {
      run = await get(`/v1/runs/${encodeURIComponent(runId)}`);
    } catch {
      return;
    }
    if (paused) return;
    drawHeader();
    drawProgress(run.progress, run.progress ? run.progress.eta_seconds : null, run.status);
    drawInfo();
    drawRules();
    logs.setAttempts(run.attempt);
    if (!ACTIVE.has(run.status)) logs.poll(); // the last lines arrive with the exit
  }
  const refetchSoon = debounce(refetch, 300);

  // Live chart refreshes: at most every CHART_EVERY_MS, and further apart when a long history
  // makes each one slow (five times the last load), so watching never hogs the server.
  let lastChart = Date.now();
  let chartTimer = null;
  function chartsSoon() {
    const every = Math.max(CHART_EVERY_MS, 5 * Math.max(charts.slowestMs, system.slowestMs));
    const wait = Math.max(0, lastChart + every - Date.now());
    if (chartTimer) return;
    chartTimer = setTimeout(() => {
      chartTimer = null;
      if (paused) return;
      lastChart = Date.now();
      charts.live().catch(() => {});
      system.live().catch(() => {});
      rate.load().catch(() => {});
    }, wait);
  }

  drawHeader();
  drawProgress(run.progress, run.progress ? run.progress.eta_seconds : null, run.status);
  drawInfo();
  drawRules();
  let progressAt = run.progress_updated_at;
  const stream = subscribe({
    runId,
    onFrame(event, data) {
      if (event === "progress") {
        run = { ...run, status: data.status, progress: data.progress, stalled: data.stalled };
        drawProgress(data.progress, data.eta_seconds, data.status);
        // The stream opens with the current snapshot: only a newer one means new points.
        if (data.progress_updated_at !== progressAt) chartsSoon();
        progressAt = data.progress_updated_at;
        return;
      }
      if (data.run_id !== runId) return;
      events.add(data);
      if (event === "checkpoint" && !paused) files.load().catch(() => {});
      refetchSoon();
    },
  });
  const logTimer = setInterval(() => {
    if (!paused && ACTIVE.has(run.status)) logs.poll();
  }, LOG_EVERY_MS);
  function stopLive() {
    stream.close();
    clearInterval(logTimer);
    clearTimeout(chartTimer);
  }
  await Promise.all([charts.load(tags), system.load(tags), rate.load(), events.load(), logs.poll(true), files.load()]
    .map((p) => p.catch((err) => console.warn(err))));
  return stopLive;
}
