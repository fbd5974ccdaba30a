// The run page's lower panels: events timeline, log tail, checkpoints and artifacts.

import { download, get } from "./api.js";
import { badge, clear, fmtBytes, fmtNum, fmtTime, flash, h, section, table } from "./dom.js";

const LOG_KEEP = 200_000; // characters of log text kept on the page
const LOG_PAGE = 1 << 20;
const LOG_LINES = 2000; // lines a page opens with: the end of the log

function detailText(details) {
  if (!details || typeof details !== "object") return "";
  return Object.entries(details)
    .filter(([k, v]) => k !== "stderr_tail" && v !== null && v !== undefined && v !== "")
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join("  ");
}

export class EventsPanel {
  /** onAdd(event): called once for each event shown (loaded or live). */
  constructor(parent, runId, onAdd = null) {
    this.runId = runId;
    this.onAdd = onAdd;
    this.seen = new Set();
    this.list = h("ol.events");
    parent.append(section("Events", this.list));
  }

  async load() {
    const got = await get(`/v1/runs/${encodeURIComponent(this.runId)}/events`, { order: "desc", limit: 200 });
    for (const ev of got.items.reverse()) this.add(ev);
  }

  add(ev) {
    if (this.seen.has(ev.seq)) return;
    this.seen.add(ev.seq);
    const tail = ev.details && Array.isArray(ev.details.stderr_tail) && ev.details.stderr_tail.length
      ? h("pre.tail", ev.details.stderr_tail.join("\n")) : null;
    const item = h("li", { dataset: { seq: ev.seq, kind: ev.kind } },
      h("span.when.small.muted", { title: ev.at }, fmtTime(ev.at)),
      h("span.seq.small.muted", `#${ev.seq}`),
      h("span.kind", { class: `k-${ev.kind}` }, ev.kind), ev.status ? badge(ev.status) : null,
      h("span.small", `attempt ${ev.attempt} · by ${ev.actor}`),
      h("div.small.mono", detailText(ev.details)), tail);
    // Newest first: insert before the first item with a lower seq.
    const after = [...this.list.children].find((li) => Number(li.dataset.seq) < ev.seq);
    this.list.insertBefore(item, after || null);
    if (this.onAdd) this.onAdd(ev);
  }
}

export class LogPanel {
  constructor(parent, runId, attempts) {
    this.runId = runId;
    this.offset = 0;
    this.text = "";
    this.busy = false;
    this.stream = h("select", { "aria-label": "log stream", onchange: () => this.reset() },
      h("option", { value: "stdout" }, "stdout"), h("option", { value: "stderr" }, "stderr"));
    this.attempt = h("select", { "aria-label": "attempt", onchange: () => this.reset() });
    this.setAttempts(attempts);
    this.pre = h("pre.log", { tabindex: 0 });
    this.note = h("span.muted.small");
    parent.append(h("section.panel", h("div.chartbar", h("h2", "Logs"), this.stream, this.attempt,
      this.note), this.pre));
  }

  setAttempts(n) {
    const current = this.attempt.value;
    if (this.attempt.options.length === Math.max(1, n)) return;
    clear(this.attempt, Array.from({ length: Math.max(1, n) }, (_, i) => {
      const num = Math.max(1, n) - i;
      return h("option", { value: num }, `attempt ${num}`);
    }));
    if (current && this.attempt.querySelector(`option[value="${current}"]`)) this.attempt.value = current;
  }

  reset() {
    this.offset = 0;
    this.text = "";
    this.pre.textContent = "";
    this.poll(true);
  }

  read(params) {
    return get(`/v1/runs/${encodeURIComponent(this.runId)}/logs`, {
      stream: this.stream.value, attempt: this.attempt.value, ...params });
  }

  /** First the last lines (the server's tail), then whatever follows them, live. */
  async poll(first = false) {
    if (this.busy) return;
    this.busy = true;
    try {
      if (first) {
        const got = await this.read({ tail: LOG_LINES, limit_bytes: LOG_KEEP });
        this.text = "";
        this.note.textContent = got.offset > 0 ? `showing the last lines (from byte ${fmtNum(got.offset)})` : "";
        this.append(got.data);
        this.offset = got.next_offset;
      }
      let got = await this.read({ offset: this.offset, limit_bytes: LOG_PAGE });
      while (got.data) {
        this.append(got.data);
        this.offset = got.next_offset;
        if (got.data.length < LOG_PAGE / 4) break;
        got = await this.read({ offset: this.offset, limit_bytes: LOG_PAGE });
      }
      if (!this.text) this.pre.textContent = "(no output yet)";
    } catch (err) {
      this.note.textContent = err.message;
    } finally {
      this.busy = false;
    }
  }

  append(data) {
    const atBottom = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 8;
    this.text = (this.text + data).slice(-LOG_KEEP);
    this.pre.textContent = this.text;
    if (atBottom) this.pre.scrollTop = this.pre.scrollHeight;
  }
}

function downloadButton(sha, name) {
  if (!sha) return "—";
  return h("button.link", { type: "button", onclick: () => download(sha, name.split("/").pop())
    .catch((err) => flash(`download failed: ${err.message}`)) }, "download");
}

export class FilesPanel {
  constructor(parent, runId) {
    this.runId = runId;
    this.ckpt = h("div");
    this.arts = h("div");
    parent.append(h("div.cols", section("Checkpoints", this.ckpt), section("Artifacts", this.arts)));
  }

  async load() {
    const id = encodeURIComponent(this.runId);
    const [ck, ar] = await Promise.all([get(`/v1/runs/${id}/checkpoints`), get(`/v1/runs/${id}/artifacts`)]);
    clear(this.ckpt, ck.items.length ? table([
      { title: "Step", cell: (c) => fmtNum(c.step) },
      { title: "Status", cell: (c) => c.status },
      { title: "Attempt", cell: (c) => c.attempt },
      { title: "Size", cell: (c) => fmtBytes(c.size) },
      { title: "Metrics", cell: (c) => Object.entries(c.metrics || {}).map(([k, v]) => `${k} ${fmtNum(v)}`).join(" · ") || "—" },
      { title: "Saved", cell: (c) => fmtTime(c.created_at) },
      { title: "", cell: (c) => downloadButton(c.sha256, c.name || `checkpoint-${c.step}`) },
    ], ck.items) : h("p.muted", "No checkpoints."));
    clear(this.arts, ar.items.length ? table([
      { title: "Name", cell: (a) => h("span.mono", a.name) },
      { title: "Kind", cell: (a) => a.kind },
      { title: "Attempt", cell: (a) => a.attempt },
      { title: "Size", cell: (a) => fmtBytes(a.size) },
      { title: "sha256", cell: (a) => h("span.mono.small", { title: a.sha256 }, a.sha256.slice(0, 12)) },
      { title: "", cell: (a) => downloadButton(a.sha256, a.name) },
    ], ar.items) : h("p.muted", "No artifacts."));
  }
}
