// A small SVG line chart for downsampled series: several series, a min/max band where a
// bucket holds many points, axes with round ticks, a hover read-out, drag to zoom and
// double-click to reset. Points come from GET /v1/runs/{id}/metrics/{tag}/series.
// Marks (rule hits) are drawn at their step on the chart of their tag, with a title.

import { fmtNum, h, num } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
export const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
  "#ca8a04", "#db2777", "#4b5563", "#65a30d"];
const M = { left: 60, right: 14, top: 12, bottom: 28 };

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((v) => v >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

function finite(v) {
  const x = num(v);
  return x !== null && Number.isFinite(x) ? x : null;
}

export class LineChart {
  /** options: {height, onZoom(minStep|null, maxStep|null), logY, xLabel (the tooltip's x
   * name, "step" by default)} */
  constructor(container, options = {}) {
    this.options = { height: 260, ...options };
    this.series = [];
    this.marks = [];
    this.root = h("div.chart");
    this.legend = h("div.legend");
    this.plot = h("div.plot");
    this.tip = h("div.tip", { hidden: true });
    this.plot.append(this.tip);
    this.root.append(this.legend, this.plot);
    container.append(this.root);
    this.resize = new ResizeObserver(() => this.render());
    this.resize.observe(this.plot);
  }

  destroy() {
    this.resize.disconnect();
    this.root.remove();
  }

  /** Pixels available for points: the series endpoint is asked for about this many. */
  width() {
    return Math.max(200, this.plot.clientWidth - M.left - M.right);
  }

  /** series: [{label, color, points: [{step, min, max, last, count}]}]; range: [lo, hi]. */
  setData(series, range = null) {
    this.series = series.map((sr, i) => ({ color: COLORS[i % COLORS.length], ...sr }));
    this.range = range;
    this.render();
  }

  /** marks: [{tag, step, label}]: a flag at `step` on the chart that draws `tag`, whose
   * title (the browser's tooltip) and hover read-out are `label`. */
  setMarks(marks) {
    this.marks = marks || [];
    this.render();
  }

  /** The marks this chart draws: those of its series' tags. */
  shownMarks() {
    const labels = new Set(this.series.map((sr) => sr.label));
    return this.marks.filter((m) => labels.has(m.tag) && Number.isFinite(m.step));
  }

  setLogY(on) {
    this.options.logY = on;
    this.render();
  }

  domain() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    const ok = (v) => v !== null && (!this.options.logY || v > 0);
    for (const sr of this.series) {
      for (const p of sr.points) {
        x0 = Math.min(x0, p.step);
        x1 = Math.max(x1, p.step);
        for (const v of [finite(p.min), finite(p.max), finite(p.last)]) {
          if (ok(v)) { y0 = Math.min(y0, v); y1 = Math.max(y1, v); }
        }
      }
    }
    if (this.range) {
      if (this.range[0] !== null) x0 = this.range[0];
      if (this.range[1] !== null) x1 = this.range[1];
    }
    if (!Number.isFinite(y0)) return null;
    if (x1 <= x0) { x0 -= 1; x1 += 1; }
    if (this.options.logY) return { x0, x1, y0: Math.log10(y0), y1: Math.log10(y1) + 1e-9 };
    if (y1 <= y0) { const d = Math.abs(y0) * 0.05 || 1; y0 -= d; y1 += d; }
    const pad = (y1 - y0) * 0.05;
    return { x0, x1, y0: y0 - pad, y1: y1 + pad };
  }

  render() {
    this.plot.querySelector("svg")?.remove();
    this.legend.replaceChildren(...this.series.map((sr) => {
      const last = sr.points.length ? sr.points[sr.points.length - 1].last : null;
      return h("span.key", h("i", { style: { background: sr.color } }), sr.label,
        h("b", fmtNum(last)));
    }));
    const W = Math.max(260, this.plot.clientWidth || 600);
    const H = this.options.height;
    const svg = s("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "svg" });
    this.plot.prepend(svg);
    const d = this.domain();
    const total = this.series.reduce((n, sr) => n + sr.points.length, 0);
    this.root.dataset.points = String(total);
    if (!d) {
      svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" },
        total ? "no finite values in this range" : "no points yet"));
      this.geom = null;
      return;
    }
    const pw = W - M.left - M.right, ph = H - M.top - M.bottom;
    const X = (step) => M.left + ((step - d.x0) / (d.x1 - d.x0)) * pw;
    const Y = (v) => {
      const y = this.options.logY ? Math.log10(v) : v;
      return M.top + (1 - (y - d.y0) / (d.y1 - d.y0)) * ph;
    };
    this.geom = { d, X, pw, ph, W, H };
    const axis = s("g", { class: "axis" });
    for (const t of niceTicks(d.x0, d.x1, Math.max(2, Math.floor(pw / 90)))) {
      axis.append(s("line", { x1: X(t), x2: X(t), y1: M.top, y2: M.top + ph, class: "gridline" }),
        s("text", { x: X(t), y: H - 8, "text-anchor": "middle" }, fmtNum(t)));
    }
    const yt = this.options.logY
      ? niceTicks(Math.floor(d.y0), Math.ceil(d.y1), 5).filter((t) => Number.isInteger(t))
        .map((t) => 10 ** t)
      : niceTicks(d.y0, d.y1, Math.max(2, Math.floor(ph / 45)));
    for (const t of yt) {
      const y = Y(t);
      if (y < M.top - 1 || y > M.top + ph + 1) continue;
      axis.append(s("line", { x1: M.left, x2: M.left + pw, y1: y, y2: y, class: "gridline" }),
        s("text", { x: M.left - 6, y: y + 4, "text-anchor": "end" }, fmtNum(t)));
    }
    axis.append(s("rect", { x: M.left, y: M.top, width: pw, height: ph, class: "frame" }));
    svg.append(axis, s("clipPath", { id: this.clipId() },
      s("rect", { x: M.left, y: M.top, width: pw, height: ph })));
    const layer = s("g", { "clip-path": `url(#${this.clipId()})` });
    const okY = (v) => v !== null && (!this.options.logY || v > 0);
    for (const sr of this.series) {
      const g = s("g", { class: "series", "data-label": sr.label, "data-points": sr.points.length });
      const band = sr.points.filter((p) => (p.count || 1) > 1 && okY(finite(p.min)) && okY(finite(p.max)));
      if (band.length > 1) {
        const top = band.map((p) => `${X(p.step).toFixed(1)},${Y(finite(p.max)).toFixed(1)}`);
        const bottom = band.slice().reverse()
          .map((p) => `${X(p.step).toFixed(1)},${Y(finite(p.min)).toFixed(1)}`);
        g.append(s("polygon", { points: [...top, ...bottom].join(" "), fill: sr.color, class: "band" }));
      }
      let path = "", pen = false, drawn = 0;
      for (const p of sr.points) {
        const v = finite(p.last);
        if (!okY(v)) { pen = false; continue; }
        path += `${pen ? "L" : "M"}${X(p.step).toFixed(1)},${Y(v).toFixed(1)}`;
        pen = true;
        drawn += 1;
      }
      g.append(s("path", { d: path, stroke: sr.color, class: "line" }));
      if (drawn === 1) {
        const p = sr.points.find((q) => okY(finite(q.last)));
        g.append(s("circle", { cx: X(p.step), cy: Y(finite(p.last)), r: 3, fill: sr.color }));
      }
      layer.append(g);
    }
    svg.append(layer);
    this.cursor = s("line", { y1: M.top, y2: M.top + ph, class: "cursor", visibility: "hidden" });
    this.sel = s("rect", { y: M.top, height: ph, class: "selection", visibility: "hidden" });
    const overlay = s("rect", { x: M.left, y: M.top, width: pw, height: ph, class: "overlay" });
    svg.append(this.cursor, this.sel, overlay);
    // Above the overlay so the flag takes the pointer (its title shows); the line lets
    // drags through (CSS pointer-events).
    for (const m of this.shownMarks()) {
      if (m.step < d.x0 || m.step > d.x1) continue;
      const x = X(m.step);
      svg.append(s("g", { class: "rulemark", "data-rule": m.rule, "data-tag": m.tag,
        "data-step": m.step },
      s("title", {}, m.label),
      s("line", { x1: x, x2: x, y1: M.top, y2: M.top + ph, class: "markline" }),
      s("polygon", { points: `${x - 5},${M.top} ${x + 5},${M.top} ${x},${M.top + 9}`,
        class: "markflag" })));
    }
    this.wire(overlay);
  }

  clipId() {
    if (!this._clip) this._clip = `clip${Math.random().toString(36).slice(2, 9)}`;
    return this._clip;
  }

  stepAt(px) {
    const { d, pw } = this.geom;
    return d.x0 + ((px - M.left) / pw) * (d.x1 - d.x0);
  }

  wire(overlay) {
    let dragFrom = null;
    const xOf = (ev) => {
      const r = overlay.ownerSVGElement.getBoundingClientRect();
      return Math.min(Math.max(ev.clientX - r.left, M.left), M.left + this.geom.pw);
    };
    const finish = (ev) => {
      if (dragFrom === null) return;
      const x = xOf(ev);
      const from = dragFrom;
      dragFrom = null;
      this.sel.setAttribute("visibility", "hidden");
      if (Math.abs(x - from) > 4 && this.options.onZoom) {
        const a = Math.floor(this.stepAt(Math.min(x, from)));
        const b = Math.ceil(this.stepAt(Math.max(x, from)));
        this.options.onZoom(a, Math.max(b, a + 1));
      }
    };
    overlay.addEventListener("mousedown", (ev) => {
      dragFrom = xOf(ev);
      ev.preventDefault();
      window.addEventListener("mouseup", finish, { once: true });
    });
    overlay.addEventListener("mousemove", (ev) => {
      const x = xOf(ev);
      this.hover(x);
      if (dragFrom !== null) {
        this.sel.setAttribute("x", Math.min(x, dragFrom));
        this.sel.setAttribute("width", Math.abs(x - dragFrom));
        this.sel.setAttribute("visibility", "visible");
      }
    });
    overlay.addEventListener("mouseleave", () => {
      this.cursor.setAttribute("visibility", "hidden");
      this.tip.hidden = true;
    });
    overlay.addEventListener("dblclick", () => this.options.onZoom?.(null, null));
  }

  hover(x) {
    const step = this.stepAt(x);
    this.cursor.setAttribute("x1", x);
    this.cursor.setAttribute("x2", x);
    this.cursor.setAttribute("visibility", "visible");
    const rows = [];
    let at = null;
    for (const sr of this.series) {
      const p = nearest(sr.points, step);
      if (!p) continue;
      at = at === null ? p.step : at;
      const spread = (p.count || 1) > 1 ? ` (${fmtNum(p.min)}…${fmtNum(p.max)})` : "";
      rows.push(h("div", h("i", { style: { background: sr.color } }),
        `${sr.label}: ${fmtNum(p.last)}${spread}`));
    }
    if (!rows.length) return;
    const { X } = this.geom;
    for (const m of this.shownMarks()) {
      if (Math.abs(X(m.step) - x) <= 6) rows.push(h("div.tipmark", m.label));
    }
    this.tip.replaceChildren(h("div.muted", `${this.options.xLabel || "step"} ${fmtNum(at)}`), ...rows);
    this.tip.hidden = false;
    const left = x + 12 + 220 > this.geom.W ? x - 232 : x + 12;
    this.tip.style.left = `${Math.max(0, left)}px`;
  }
}

/** The point whose step is closest to `step` (points are sorted by step). */
export function nearest(points, step) {
  if (!points.length) return null;
  let lo = 0, hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid].step < step) lo = mid + 1;
    else hi = mid;
  }
  if (lo > 0 && Math.abs(points[lo - 1].step - step) < Math.abs(points[lo].step - step)) lo -= 1;
  return points[lo];
}
