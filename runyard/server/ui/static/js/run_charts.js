// The run page's metric charts: every chart draws one or more tags from the downsampled
// series endpoint. Loss-like tags share the first chart; the rest get one chart each. System
// metrics (tags under sys/) have a panel of their own, grouped by kind (sysGroups).

import { get } from "./api.js";
import { ChartCard } from "./chartcard.js";
import { h } from "./dom.js";

const MAX_DEFAULT_CHARTS = 6;
const TAGS_EVERY_MS = 10_000;
const TAGS_PAGE = 1000;

/** Default grouping of tag names into charts. */
export function defaultGroups(tags) {
  const loss = tags.filter((t) => /loss/i.test(t));
  const rest = tags.filter((t) => !/loss/i.test(t));
  const groups = loss.length ? [loss, ...rest.map((t) => [t])] : rest.map((t) => [t]);
  return groups.slice(0, MAX_DEFAULT_CHARTS);
}

export const isSys = (tag) => tag.startsWith("sys/");

/** System tags into charts by kind: CPU, memory, disk, network, then GPU utilisation and
 * GPU memory with every GPU on one chart. */
export function sysGroups(tags) {
  const kinds = [/^sys\/cpu/, /^sys\/rss/, /^sys\/host_memory/, /^sys\/disk_/, /^sys\/net_/,
    /^sys\/gpu\d+\/util/, /^sys\/gpu\d+\/memory_used/, /^sys\/gpu\d+\/memory_percent/];
  const groups = kinds.map((re) => tags.filter((t) => re.test(t)));
  const known = new Set(groups.flat());
  return [...groups, ...tags.filter((t) => !known.has(t)).map((t) => [t])]
    .filter((g) => g.length);
}

/** Every tag of a run (`{items}`), the endpoint's pages followed. */
export async function tagsOf(runId) {
  const items = [];
  let after;
  for (;;) {
    const page = await get(`/v1/runs/${encodeURIComponent(runId)}/metrics/tags`,
      { limit: TAGS_PAGE, after });
    items.push(...page.items);
    if (page.next_after == null || !page.items.length) return { items };
    after = page.next_after;
  }
}

export async function seriesOf(runId, tag, range) {
  return get(`/v1/runs/${encodeURIComponent(runId)}/metrics/${encodeURIComponent(tag)}/series`, {
    points: range.points, min_step: range.minStep, max_step: range.maxStep });
}

export class RunCharts {
  /** options: {title, accept(tag) (which tags this panel draws), groups(tags), empty} */
  constructor(parent, runId, options = {}) {
    this.options = { title: "Metrics", accept: (t) => !isSys(t), groups: defaultGroups,
      empty: "No metrics logged yet.", ...options };
    this.runId = runId;
    this.cards = [];
    this.tags = [];
    this.tagsAt = 0;
    this.marks = [];
    this.box = h("div.charts");
    this.empty = h("p.muted", this.options.empty);
    this.add = h("button", { type: "button", onclick: () => this.addChart([this.tags[0]]) },
      "+ Chart");
    parent.append(h("section.panel", { "data-panel": this.options.title },
      h("div.chartbar", h("h2", this.options.title), h("span.spacer"), this.add),
      this.empty, this.box));
  }

  /** Tags (or `prefetched`, a pending answer of the tags endpoint), then charts for new ones. */
  async load(prefetched = null) {
    this.tagsAt = Date.now();
    const got = await (prefetched || tagsOf(this.runId));
    const tags = got.items.map((t) => t.tag).filter(this.options.accept);
    const fresh = tags.filter((t) => !this.tags.includes(t));
    this.tags = tags;
    this.empty.hidden = tags.length > 0;
    this.add.disabled = !tags.length;
    if (!this.cards.length) {
      for (const group of this.options.groups(tags)) this.addChart(group);
    } else if (fresh.length) {
      for (const card of this.cards) this.chips(card);
    }
  }

  addChart(tags) {
    if (!tags.length || tags[0] === undefined) return;
    const state = { tags: new Set(tags) };
    const extra = h("span.chips");
    const card = new ChartCard(this.box, {
      title: "",
      extra,
      load: (range) => this.loadCard(state, range),
      onRemove: (c) => {
        c.destroy();
        this.cards = this.cards.filter((x) => x.card !== c);
      },
    });
    const entry = { card, state, extra };
    card.chart.setMarks(this.marks);
    this.cards.push(entry);
    this.chips(entry);
    card.refresh();
  }

  /** Tag toggles: a chart draws every tag whose chip is on. */
  chips(entry) {
    entry.extra.replaceChildren(...this.tags.map((tag) => h("label.chip", {
      class: entry.state.tags.has(tag) ? "on" : "",
    }, h("input", { type: "checkbox", checked: entry.state.tags.has(tag), onchange: (ev) => {
      if (ev.target.checked) entry.state.tags.add(tag); else entry.state.tags.delete(tag);
      ev.target.parentElement.classList.toggle("on", ev.target.checked);
      entry.card.setTitle([...entry.state.tags].join(", ") || "(no tag)");
      entry.card.refresh();
    } }), tag)));
    entry.card.setTitle([...entry.state.tags].join(", ") || "(no tag)");
  }

  async loadCard(state, range) {
    const tags = this.tags.filter((t) => state.tags.has(t));
    const got = await Promise.all(tags.map((t) => seriesOf(this.runId, t, range)));
    return { series: got.map((g) => ({ label: g.tag, points: g.points })),
      total: got.reduce((n, g) => n + (g.total || 0), 0) };
  }

  /** Rule hits to mark ([{rule, tag, step, label}]); each chart draws those of its tags. */
  setMarks(marks) {
    this.marks = marks;
    for (const { card } of this.cards) card.chart.setMarks(marks);
  }

  /** Redraw charts that follow the newest steps (live); zoomed ones keep their range.
   * New tags are looked for at most every TAGS_EVERY_MS. */
  async live() {
    if (Date.now() - this.tagsAt > TAGS_EVERY_MS) await this.load();
    for (const { card } of this.cards) if (card.following) card.refresh({ live: true });
  }

  /** How long the slowest chart took to load (live refreshes are spaced by it). */
  get slowestMs() {
    return Math.max(0, ...this.cards.map(({ card }) => card.lastLoadMs));
  }
}
