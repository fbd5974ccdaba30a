// The run page's rules: each effective rule (source, condition, actions, hits, last hit),
// and its hits as marks for the charts (docs/rules.md). Everything a user chose (rule names,
// tags, patterns, channel names) is text.

import { clear, fmtNum, fmtTime, h, num, section, table } from "./dom.js";

// Keys of a rule object that are not part of its condition.
const NOT_CONDITION = new Set(["id", "name", "when", "then", "project", "owner", "applies_to",
  "created_by", "created_at", "source", "hits", "last_hit"]);

function word(v) {
  return typeof v === "string" && !/\s/.test(v) && v !== "" ? v : JSON.stringify(v);
}

/** "plateau tag=val_loss patience=5 -> stop,notify:team" (as `runyard show` prints it). */
export function ruleSummary(rule) {
  const args = Object.entries(rule).filter(([k]) => !NOT_CONDITION.has(k))
    .map(([k, v]) => `${k}=${word(v)}`).join(" ");
  const then = Array.isArray(rule.then) && rule.then.length ? rule.then.join(",") : "event";
  return `${`${rule.when} ${args}`.trim()} -> ${then}`;
}

/** A value of a hit: a number (NaN and the infinities spelled), else the text as it is. */
function valueText(v) {
  if (num(v) !== null) return fmtNum(v);
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** A hit's evidence in a few words: "val_loss = 0.5 at step 25 (best 0.5)". */
export function hitText(d) {
  if (!d || typeof d !== "object") return "";
  const parts = [];
  if (d.tag !== undefined && d.tag !== null && d.value !== undefined) {
    parts.push(`${d.tag} = ${valueText(d.value)}`);
  }
  if (typeof d.step === "number") parts.push(`at step ${fmtNum(d.step)}`);
  if (d.best !== undefined && d.best !== null) parts.push(`(best ${valueText(d.best)})`);
  if (typeof d.line === "string") parts.push(`line: ${d.line}`);
  if (typeof d.status === "string" && d.tag === undefined) parts.push(`status ${d.status}`);
  if (d.no_step_for_s !== undefined) parts.push(`no step for ${fmtNum(d.no_step_for_s)} s`);
  if (d.elapsed_s !== undefined) parts.push(`running ${fmtNum(d.elapsed_s)} s`);
  return parts.join(" ");
}

/** A time from the API: ISO text, or UNIX seconds. */
function when(at) {
  if (typeof at === "number") return fmtTime(new Date(at * 1000).toISOString());
  return fmtTime(at);
}

/** The chart mark of a hit's details, or null when the hit has no tag and step. */
export function hitMark(d) {
  if (!d || typeof d !== "object" || typeof d.tag !== "string" || typeof d.step !== "number") {
    return null;
  }
  const rule = typeof d.rule === "string" ? d.rule : "?";
  return { rule, tag: d.tag, step: d.step, attempt: d.attempt,
    label: `rule ${rule}: ${hitText(d)}` };
}

/** The marks of a run: each rule hit seen (events, and each rule's last hit), once. */
export class RuleMarks {
  constructor(onChange) {
    this.byKey = new Map();
    this.onChange = onChange;
  }

  add(details) {
    const m = hitMark(details);
    if (!m) return;
    const key = JSON.stringify([m.rule, m.tag, m.step, m.attempt ?? null]);
    if (this.byKey.has(key)) return;
    this.byKey.set(key, m);
    this.onChange([...this.byKey.values()]);
  }
}

export class RulesPanel {
  constructor(parent, runId) {
    this.runId = runId;
    this.body = h("div");
    this.root = section("Rules", this.body);
    this.root.classList.add("rules");
    this.root.hidden = true;
    parent.append(this.root);
  }

  draw(rules) {
    const list = Array.isArray(rules) ? rules : [];
    this.root.hidden = !list.length;
    if (!list.length) return;
    const notifies = list.some((r) => Array.isArray(r.then) &&
      r.then.some((a) => String(a).startsWith("notify:")));
    clear(this.body, table([
      { title: "Rule", cell: (r) => h("b", r.name) },
      { title: "Source", cell: (r) => r.source },
      { title: "Condition", cell: (r) => h("span.mono.small", ruleSummary(r)) },
      { title: "Hits", cell: (r) => (r.hits ? h("span.alert", { title: `${r.hits} hit${r.hits === 1 ? "" : "s"}` },
        String(r.hits)) : "0"), class: "num" },
      { title: "Last hit", cell: (r) => (r.last_hit
        ? [h("span.small", hitText(r.last_hit) || "fired"),
          h("div.muted.small", when(r.last_hit.at))] : "—") },
    ], list, (r) => ({ dataset: { rule: r.name, hits: r.hits || 0 } })),
    notifies ? h("p.small", h("a", { href: `/notifications?run_id=${encodeURIComponent(this.runId)}` },
      "Deliveries of this run's notifications →")) : null);
  }
}
