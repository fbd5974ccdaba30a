// A chart with its controls: a step range (typed, or dragged on the chart), reset, log
// scale, and a read-out of how many stored points the drawn buckets stand for.

import { LineChart } from "./chart.js";
import { fmtNum, h } from "./dom.js";

/** An integer step from an input ("" is no bound); throws a message for anything else. */
export function parseStep(text, name) {
  const t = text.trim();
  if (!t) return null;
  if (!/^-?\d+$/.test(t)) throw new Error(`${name}: expected a whole step number, got "${t}"`);
  return Number(t);
}

export class ChartCard {
  /**
   * options: {title, load: async ({minStep, maxStep, points}) => {series, total}, extra:
   * Node shown in the header (e.g. tag chips), onRemove}
   */
  constructor(parent, options) {
    this.options = options;
    this.range = { minStep: null, maxStep: null };
    this.seq = 0;
    this.inflight = false;
    this.pending = false;
    this.lastLoadMs = 0;
    this.minInput = h("input", { type: "text", inputmode: "numeric", placeholder: "min step",
      size: 9, "aria-label": "min step" });
    this.maxInput = h("input", { type: "text", inputmode: "numeric", placeholder: "max step",
      size: 9, "aria-label": "max step" });
    this.error = h("span.error.small");
    this.info = h("span.muted.small");
    const form = h("form.range", {
      onsubmit: (ev) => { ev.preventDefault(); this.applyInputs(); },
    }, "steps", this.minInput, "–", this.maxInput,
    h("button", { type: "submit" }, "Apply"),
    h("button", { type: "button", onclick: () => this.zoom(null, null) }, "Reset"),
    h("label.small", h("input", { type: "checkbox", onchange: (ev) => this.chart.setLogY(ev.target.checked) }), "log y"),
    this.error);
    this.root = h("div.chartcard",
      h("div.chartbar", h("h3", options.title || ""), options.extra || null, h("span.spacer"),
        options.onRemove ? h("button.link", { type: "button", title: "remove chart",
          onclick: () => options.onRemove(this) }, "×") : null),
      form);
    parent.append(this.root);
    this.chart = new LineChart(this.root, { onZoom: (a, b) => this.zoom(a, b) });
    this.root.append(h("div.chartfoot", this.info,
      h("span.muted.small", "drag to zoom · double-click to reset")));
  }

  setTitle(text) {
    this.root.querySelector("h3").textContent = text;
  }

  applyInputs() {
    this.error.textContent = "";
    try {
      const a = parseStep(this.minInput.value, "min step");
      const b = parseStep(this.maxInput.value, "max step");
      if (a !== null && b !== null && a > b) throw new Error("min step is above max step");
      this.zoom(a, b);
    } catch (err) {
      this.error.textContent = err.message;
    }
  }

  zoom(minStep, maxStep) {
    this.range = { minStep, maxStep };
    this.minInput.value = minStep === null ? "" : String(minStep);
    this.maxInput.value = maxStep === null ? "" : String(maxStep);
    this.error.textContent = "";
    return this.refresh();
  }

  /** True when the chart follows the newest points (no upper bound set). */
  get following() {
    return this.range.maxStep === null;
  }

  /**
   * Fetch and redraw. A user's change (zoom, range, tags) always wins: an older answer is
   * dropped. A live refresh (`{live: true}`) never piles up: while one is in flight the next
   * waits for it, so a long history costs the server one query at a time per chart.
   */
  async refresh({ live = false } = {}) {
    if (live && this.inflight) {
      this.pending = true;
      return;
    }
    const seq = ++this.seq;
    const points = Math.min(2000, Math.max(100, Math.round(this.chart.width())));
    const started = performance.now();
    this.inflight = true;
    try {
      const got = await this.options.load({ ...this.range, points });
      if (seq !== this.seq) return;
      this.lastLoadMs = performance.now() - started;
      this.chart.setData(got.series, [this.range.minStep, this.range.maxStep]);
      const drawn = got.series.reduce((n, sr) => n + sr.points.length, 0);
      this.info.textContent = `${fmtNum(got.total)} stored points, ${fmtNum(drawn)} drawn`;
      this.root.dataset.total = String(got.total);
      this.root.dataset.range = `${this.range.minStep ?? ""}:${this.range.maxStep ?? ""}`;
    } catch (err) {
      if (seq !== this.seq) return;
      this.error.textContent = err.message;
    } finally {
      if (seq === this.seq) this.inflight = false;
      if (seq === this.seq && this.pending) {
        this.pending = false;
        this.refresh({ live: true });
      }
    }
  }

  destroy() {
    this.chart.destroy();
    this.root.remove();
  }
}
