// Compare: one metric of 2 to 10 runs on one chart (runs=ID,ID,...&tag=TAG).

import { get } from "./api.js";
import { ChartCard } from "./chartcard.js";
import { COLORS } from "./chart.js";
import { badge, clear, fmtNum, h, section, table } from "./dom.js";
import { seriesOf, tagsOf } from "./run_charts.js";

export const MIN_RUNS = 2;
export const MAX_RUNS = 10;

export async function render(main, { query }) {
  document.title = "Compare · Runyard";
  main.append(h("h1", "Compare runs"));
  const ids = [...new Set((query.get("runs") || "").split(",").map((s) => s.trim()).filter(Boolean))];
  if (ids.length < MIN_RUNS || ids.length > MAX_RUNS) {
    main.append(h("p", ids.length > MAX_RUNS
      ? `At most ${MAX_RUNS} runs can be compared; ${ids.length} were given.`
      : `Pick ${MIN_RUNS} to ${MAX_RUNS} runs: tick them on the `, h("a", { href: "/" }, "Runs"),
    " page and press Compare."));
    return null;
  }
  const runs = [];
  const problems = [];
  await Promise.all(ids.map(async (id, i) => {
    try {
      const [run, tags] = await Promise.all([get(`/v1/runs/${encodeURIComponent(id)}`),
        tagsOf(id)]);
      runs[i] = { run, tags: tags.items };
    } catch (err) {
      problems.push(`${id}: ${err.message}`);
    }
  }));
  for (const p of problems) main.append(h("p.error", p));
  const found = runs.filter(Boolean);
  if (found.length < MIN_RUNS) {
    main.append(h("p", "Not enough runs to compare."));
    return null;
  }
  const names = new Map();
  for (const { run } of found) names.set(run.name, (names.get(run.name) || 0) + 1);
  const label = (run) => (names.get(run.name) > 1 ? `${run.name} (${run.id.slice(0, 6)})` : run.name);
  const allTags = [...new Set(found.flatMap((r) => r.tags.map((t) => t.tag)))].sort();
  const inAll = allTags.filter((t) => found.every((r) => r.tags.some((x) => x.tag === t)));
  let tag = query.get("tag");
  if (!tag || !allTags.includes(tag)) tag = inAll.find((t) => /loss/i.test(t)) || inAll[0] || allTags[0];
  if (!tag) {
    main.append(h("p.muted", "None of these runs has logged a metric yet."));
    return null;
  }
  const select = h("select", { "aria-label": "metric", onchange: () => {
    tag = select.value;
    const q = new URLSearchParams(location.search);
    q.set("tag", tag);
    history.replaceState(null, "", `/compare?${q}`);
    card.setTitle(tag);
    drawTable();
    card.refresh();
  } }, allTags.map((t) => h("option", { value: t, selected: t === tag }, t)));
  const box = h("section.panel");
  main.append(box);
  const card = new ChartCard(box, {
    title: tag,
    extra: h("label.small", "metric ", select),
    load: async (range) => {
      const got = await Promise.all(found.map(({ run }) => seriesOf(run.id, tag, range)
        .catch(() => ({ points: [], total: 0 }))));
      return { series: got.map((g, i) => ({ label: label(found[i].run), points: g.points,
        color: COLORS[i % COLORS.length] })), total: got.reduce((n, g) => n + (g.total || 0), 0) };
    },
  });
  const tableBox = h("div");
  main.append(section("Runs", tableBox));
  const drawTable = () => clear(tableBox, table([
    { title: "", cell: (r) => h("i.swatch", { style: { background: COLORS[found.indexOf(r) % COLORS.length] } }) },
    { title: "Run", cell: (r) => h("a", { href: `/runs/${encodeURIComponent(r.run.id)}` }, label(r.run)) },
    { title: "Status", cell: (r) => badge(r.run.status) },
    { title: "Project", cell: (r) => r.run.project },
    { title: "Last value", cell: (r) => {
      const t = r.tags.find((x) => x.tag === tag);
      return t ? `${fmtNum(t.last_value)} at step ${fmtNum(t.last_step)}` : "—";
    } },
  ], found));
  drawTable();
  await card.refresh();
  return null;
}
