// One eval: what it checks, its runs (with pass rates) and two runs side by side, row by row.
// Polls every 3 s while a run is queued or in progress, or the eval's job can still add runs.
"use strict";

(async () => {
  if (!(await ORFT.start())) return;
  const { el } = ORFT;
  const evalId = document.getElementById("eval").dataset.evalId;
  const api = "/v1/evals/" + encodeURIComponent(evalId);
  const PAGE = 50;
  let chosen = { base: null, tuned: null };
  let offset = 0;
  let runCount = -1;

  function renderEval(ev) {
    document.getElementById("eval-title").textContent = ev.name;
    const job = (ev.metadata || {}).openrft_job_id;
    const link = document.getElementById("job-link");
    link.hidden = !job;
    if (job) {
      link.href = "/jobs/" + encodeURIComponent(job);
      link.textContent = "Job " + job;
    }
    const facts = [
      ["Eval", ev.id],
      ["Created", ORFT.time(ev.created_at)],
      ["Criteria", ev.testing_criteria.map((c) => c.name + " (" + c.type + ")").join(", ")],
    ];
    document
      .getElementById("facts")
      .replaceChildren(...facts.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
  }

  function runRow(run) {
    const counts = run.result_counts || {};
    const report = EVALS.page(encodeURIComponent(evalId) + "/runs/" + encodeURIComponent(run.id));
    return el(
      "tr",
      { "data-run": run.id },
      el("td", {}, el("a", { href: report }, run.name)),
      el("td", {}, ORFT.status(run.status)),
      el("td", { class: "clip", title: run.model || "" }, run.model || "—"),
      el("td", { class: "num" }, (counts.passed ?? 0) + " / " + (counts.total ?? 0)),
      el(
        "td",
        {},
        (run.per_testing_criteria_results || [])
          .map((c) => c.testing_criteria + " " + EVALS.rate(c.passed, c.failed))
          .join(", ") || "—",
      ),
      el("td", { class: "nowrap" }, ORFT.time(run.created_at)),
    );
  }

  async function allRuns() {
    const runs = [];
    let after = null;
    for (;;) {
      const query = "?limit=100" + (after ? "&after=" + encodeURIComponent(after) : "");
      const page = await ORFT.api(api + "/runs" + query);
      runs.push(...page.data);
      if (!page.has_more) return runs;
      after = page.last_id;
    }
  }

  function side(cell) {
    if (!cell) return [el("td", {}, el("pre", {}, "—")), el("td", { class: "num" }, "—")];
    return [
      el("td", { class: "output" }, el("pre", {}, cell.output), EVALS.grades(cell.results)),
      el("td", { class: "num reward-cell status-" + cell.status }, ORFT.number(cell.score)),
    ];
  }

  function fillSelect(id, runs, value) {
    document
      .getElementById(id)
      .replaceChildren(
        ...runs.map((r) => el("option", { value: r.id, selected: r.id === value }, r.name)),
      );
  }

  async function refreshCompare() {
    const params = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
    if (chosen.base) params.set("base", chosen.base);
    if (chosen.tuned) params.set("tuned", chosen.tuned);
    const result = await ORFT.api("/dashboard/api/evals/" + encodeURIComponent(evalId) + "/compare?" + params);
    const done = result.runs.filter((r) => r.status === "completed");
    fillSelect("compare-base", done, result.base);
    fillSelect("compare-tuned", done, result.tuned);
    const rows = result.rows.map((r) =>
      el(
        "tr",
        { "data-row": r.datasource_item_id },
        el("td", {}, el("pre", {}, EVALS.prompt(r.item))),
        el("td", { class: "reference" }, el("pre", {}, EVALS.reference(r.item))),
        ...side(r.base),
        ...side(r.tuned),
      ),
    );
    document.querySelector("#compare tbody").replaceChildren(...rows);
    document.getElementById("compare-empty").hidden = Boolean(result.base && result.tuned);
    document.getElementById("compare-prev").disabled = offset === 0;
    document.getElementById("compare-next").disabled = !result.has_more;
    document.getElementById("compare-page").textContent = result.total
      ? "rows " + (offset + 1) + "–" + (offset + result.rows.length) + " of " + result.total
      : "";
  }

  for (const which of ["base", "tuned"]) {
    document.getElementById("compare-" + which).addEventListener("change", (event) => {
      chosen[which] = event.target.value;
      offset = 0;
      refreshCompare().catch((e) => ORFT.flash(e.message));
    });
  }
  document.getElementById("compare-prev").addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE);
    refreshCompare().catch((e) => ORFT.flash(e.message));
  });
  document.getElementById("compare-next").addEventListener("click", () => {
    offset += PAGE;
    refreshCompare().catch((e) => ORFT.flash(e.message));
  });

  async function refresh() {
    let ev;
    try {
      ev = await ORFT.api(api);
    } catch (error) {
      const box = document.getElementById("eval-missing");
      box.textContent = error.message; // another project's eval is a 404, as in the API
      box.hidden = false;
      return false;
    }
    renderEval(ev);
    const runs = await allRuns();
    document.querySelector("#runs tbody").replaceChildren(...runs.map(runRow));
    document.getElementById("runs-empty").hidden = runs.length > 0;
    if (runs.length !== runCount) {
      runCount = runs.length;
      await refreshCompare();
    }
    document.body.dataset.refreshed = String(Date.now());
    if (runs.some((r) => r.status === "queued" || r.status === "in_progress")) return true;
    const job = (ev.metadata || {}).openrft_job_id;
    if (!job) return false;
    // a job's eval gains a run with each evaluation while the job can still train
    const status = (await ORFT.api("/v1/fine_tuning/jobs/" + encodeURIComponent(job))).status;
    return !ORFT.TERMINAL.includes(status);
  }
  ORFT.poll(refresh, 3000);
})();
