// What the runs table and the run page share: progress bars, ETAs, role-aware actions.

import { post } from "./api.js";
import { fmtDuration, fmtNum, flash, h, num } from "./dom.js";

export const STATUSES = ["queued", "claimed", "running", "stopping", "completed", "failed",
  "stopped", "cancelled"];
export const ACTIVE = new Set(["claimed", "running", "stopping"]);
export const ENDED = new Set(["completed", "failed", "stopped", "cancelled"]);

/** Percent done from a snapshot: its own percent, else step/total, else epoch/total. */
export function percentOf(p) {
  if (!p) return null;
  const pct = num(p.percent);
  if (pct !== null && Number.isFinite(pct)) return Math.min(100, Math.max(0, pct));
  const step = num(p.step), total = num(p.total_steps);
  if (step !== null && total) return Math.min(100, Math.max(0, (100 * step) / total));
  const ep = num(p.epoch), eps = num(p.total_epochs);
  if (ep !== null && eps) return Math.min(100, Math.max(0, (100 * ep) / eps));
  return null;
}

/** Seconds left: the server's estimate, the snapshot's, or remaining steps over the rate. */
export function etaOf(p, serverEta) {
  const s = num(serverEta);
  if (s !== null && Number.isFinite(s)) return s;
  if (!p) return null;
  const own = num(p.eta_seconds);
  if (own !== null && Number.isFinite(own)) return own;
  const rate = p.rate && num(p.rate.value);
  const step = num(p.step), total = num(p.total_steps);
  if (rate > 0 && step !== null && total && /step/.test(p.rate.units || "steps")) {
    return Math.max(0, (total - step) / rate);
  }
  return null;
}

export function progressBar(p, status, eta) {
  const pct = percentOf(p);
  const done = status === "completed";
  const shown = done && pct === null ? 100 : pct;
  const idle = status === "queued" ? "waiting" : "—";
  const label = shown === null ? (p && p.step !== undefined ? `step ${fmtNum(p.step)}` : idle)
    : `${shown.toFixed(shown < 10 ? 1 : 0)}%`;
  const etaText = ACTIVE.has(status) && eta !== null && eta !== undefined ? ` · ETA ${fmtDuration(eta)}` : "";
  return h("div.progress", {
    role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
    "aria-valuenow": shown === null ? null : shown.toFixed(1),
    dataset: { percent: shown === null ? "" : shown.toFixed(3), status },
  }, h("div.fill", { class: `st-${status}`, style: { width: `${shown || 0}%` } }),
  h("span.text", label + etaText));
}

export function stalledMark(stalled) {
  return stalled ? h("span.stalled", { title: "no new step for longer than stall_after_s" },
    "stalled") : null;
}

/** The alert badge of a run some rule fired on (`rule_hits` > 0), its count in the title. */
export function alertMark(hits) {
  const n = typeof hits === "number" && Number.isFinite(hits) ? hits : 0;
  if (n <= 0) return null;
  return h("span.alert", { title: `${n} rule hit${n === 1 ? "" : "s"}`, dataset: { hits: n } },
    `⚑ ${n}`);
}

/** The snapshot's metrics as "loss 0.31 · accuracy 0.88" (at most `max`). */
export function keyMetrics(p, max = 3) {
  const m = (p && p.metrics) || {};
  const keys = Object.keys(m).slice(0, max);
  if (!keys.length) return "—";
  return keys.map((k) => `${k} ${fmtNum(m[k])}`).join(" · ");
}

/** Which actions this token may take on this run (the server checks again). */
export function allowed(me, run) {
  const own = run.owner === me.name;
  const mayStop = me.can.stop_any || (me.can.stop_own && own);
  const mayRestart = me.can.restart_any || (me.can.restart_own && own);
  return {
    stop: mayStop && (run.status === "queued" || ACTIVE.has(run.status)),
    restart: mayRestart && run.status !== "queued",
    requeue: me.can.requeue && ["failed", "stopped", "cancelled"].includes(run.status),
  };
}

/** The Stop (with grace), Restart and Requeue controls this token may use; none for a viewer. */
export function actionBar(me, run, onDone) {
  const may = allowed(me, run);
  if (!may.stop && !may.restart && !may.requeue) return null;
  const grace = h("input", { type: "number", min: 0, step: 1, value: 30, size: 5,
    "aria-label": "grace seconds", title: "grace period in seconds" });
  const act = async (btn, path, body, verb) => {
    btn.disabled = true;
    try {
      const run2 = await post(`/v1/runs/${encodeURIComponent(run.id)}/${path}`, body);
      flash(`${verb}: run is now ${run2.status}`, "note");
      onDone(run2);
    } catch (err) {
      flash(`${verb} failed: ${err.message}`);
    } finally {
      btn.disabled = false;
    }
  };
  const graceValue = () => {
    const g = Number(grace.value);
    if (grace.value.trim() === "" || !Number.isFinite(g) || g < 0) {
      throw new Error("grace: enter a number of seconds, 0 or more");
    }
    return g;
  };
  const bar = h("div.actions");
  if (may.stop) {
    const btn = h("button.danger", { type: "button", dataset: { action: "stop" } }, "Stop");
    btn.addEventListener("click", () => {
      let g;
      try { g = graceValue(); } catch (err) { flash(err.message); return; }
      act(btn, "stop", { grace_seconds: g }, "Stop");
    });
    bar.append(h("label.small", "grace ", grace, " s"), btn);
  }
  if (may.restart) {
    const btn = h("button", { type: "button", dataset: { action: "restart" } }, "Restart");
    btn.addEventListener("click", () => act(btn, "restart", {}, "Restart"));
    bar.append(btn);
  }
  if (may.requeue) {
    const btn = h("button", { type: "button", dataset: { action: "requeue" } }, "Requeue");
    btn.addEventListener("click", () => act(btn, "requeue", {}, "Requeue"));
    bar.append(btn);
  }
  return bar;
}
