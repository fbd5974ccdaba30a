// The run page's progress-rate chart: steps per second over time, from the downsampled
// progress history (GET /v1/runs/{id}/progress/history?points=N). One line per attempt, the
// x axis in seconds since the first snapshot shown.

import { get } from "./api.js";
import { LineChart } from "./chart.js";
import { h } from "./dom.js";

/** Chart series from history entries: [{label, points: [{step: seconds, min, max, last}]}]. */
export function rateSeries(items) {
  const t0 = items.length ? Date.parse(items[0].at) : 0;
  const byAttempt = new Map();
  for (const e of items) {
    if (e.steps_per_s === null || e.steps_per_s === undefined) continue;
    const t = (Date.parse(e.at) - t0) / 1000;
    if (!Number.isFinite(t)) continue;
    if (!byAttempt.has(e.attempt)) byAttempt.set(e.attempt, []);
    const v = e.steps_per_s;
    byAttempt.get(e.attempt).push({ step: Math.round(t * 1000) / 1000, min: v, max: v, last: v, count: 1 });
  }
  return [...byAttempt.entries()].map(([attempt, points]) => ({
    label: `attempt ${attempt} steps/s`, points }));
}

export class RateChart {
  constructor(parent, runId) {
    this.runId = runId;
    this.empty = h("p.muted", "No step rate yet (it needs two snapshots with a step).");
    this.box = h("div.ratechart");
    parent.append(h("section.panel", { id: "progress-rate" }, h("h2", "Progress rate"),
      this.empty, this.box));
    this.chart = new LineChart(this.box, { height: 180, xLabel: "seconds" });
    this.loading = false;
  }

  async load() {
    if (this.loading) return;
    this.loading = true;
    try {
      const got = await get(`/v1/runs/${encodeURIComponent(this.runId)}/progress/history`,
        { points: Math.min(2000, this.chart.width()) });
      const series = rateSeries(got.items);
      const any = series.some((s) => s.points.length);
      this.empty.hidden = any;
      this.box.hidden = !any;
      if (any) this.chart.setData(series);
    } finally {
      this.loading = false;
    }
  }
}
