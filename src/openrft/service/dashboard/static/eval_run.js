// One eval run (the API's `report_url`): its summary, result counts, pass rate per criterion
// and its output items (input, sample, grades), a page at a time. Polls while it runs.
"use strict";

(async () => {
  if (!(await ORFT.start())) return;
  const { el } = ORFT;
  const box = document.getElementById("run");
  const evalId = box.dataset.evalId;
  const runId = box.dataset.runId;
  const api = "/v1/evals/" + encodeURIComponent(evalId) + "/runs/" + encodeURIComponent(runId);
  const PAGE = 20;
  let cursors = [null]; // `after` of each page shown so far
  let filter = "";
  let itemsShown = -1;

  function facts(id, pairs) {
    document
      .getElementById(id)
      .replaceChildren(...pairs.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
  }

  function renderRun(run) {
    document.getElementById("run-title").textContent = run.name;
    const status = document.getElementById("run-status");
    status.replaceWith(Object.assign(ORFT.status(run.status), { id: "run-status" }));
    const meta = run.metadata || {};
    const pairs = [
      ["Run", run.id],
      ["Model", run.model || "— (ready samples)"],
      ["Data source", run.data_source.type],
      ["Created", ORFT.time(run.created_at)],
    ];
    if (meta.openrft_job_id) {
      pairs.push(["Job", el("a", { href: "/jobs/" + encodeURIComponent(meta.openrft_job_id) }, meta.openrft_job_id)]);
      pairs.push(["Step", meta.openrft_step ?? "—"]);
    }
    facts("facts", pairs);
    const counts = run.result_counts || {};
    facts(
      "counts",
      ["total", "passed", "failed", "errored"].map((k) => [k, String(counts[k] ?? 0)]),
    );
    document.querySelector("#criteria tbody").replaceChildren(
      ...(run.per_testing_criteria_results || []).map((c) =>
        el(
          "tr",
          { "data-criterion": c.testing_criteria },
          el("td", {}, c.testing_criteria),
          el("td", { class: "num" }, c.passed),
          el("td", { class: "num" }, c.failed),
          el("td", { class: "num" }, EVALS.rate(c.passed, c.failed)),
        ),
      ),
    );
    const error = document.getElementById("run-error");
    error.hidden = !run.error;
    if (run.error) error.textContent = (run.error.code || "error") + ": " + run.error.message;
  }

  async function refreshItems() {
    const after = cursors[cursors.length - 1];
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (after) params.set("after", after);
    if (filter) params.set("status", filter);
    const page = await ORFT.api(api + "/output_items?" + params);
    const rows = page.data.map((item) =>
      el(
        "tr",
        { "data-item": item.id, class: item.status === "fail" ? "flagged" : null },
        el("td", { class: "num narrow" }, item.datasource_item_id),
        el("td", {}, el("pre", {}, EVALS.prompt(item.datasource_item))),
        el("td", {}, el("pre", {}, EVALS.reference(item.datasource_item))),
        el("td", {}, el("pre", {}, EVALS.output(item.sample))),
        el("td", { class: "grades" }, EVALS.grades(item.results)),
        el("td", { class: "narrow" }, item.status),
      ),
    );
    document.querySelector("#items tbody").replaceChildren(...rows);
    document.getElementById("items-empty").hidden = rows.length > 0;
    document.getElementById("items-prev").disabled = cursors.length === 1;
    document.getElementById("items-next").disabled = !page.has_more;
    document.getElementById("items-next").dataset.after = page.last_id || "";
    document.getElementById("items-page").textContent = "page " + cursors.length;
    return rows.length;
  }

  const reload = () => refreshItems().catch((e) => ORFT.flash(e.message));
  document.getElementById("items-next").addEventListener("click", (event) => {
    cursors.push(event.target.dataset.after);
    reload();
  });
  document.getElementById("items-prev").addEventListener("click", () => {
    if (cursors.length > 1) cursors.pop();
    reload();
  });
  document.getElementById("item-status").addEventListener("change", (event) => {
    filter = event.target.value;
    cursors = [null];
    reload();
  });

  async function refresh() {
    let run;
    try {
      run = await ORFT.api(api);
    } catch (error) {
      const box = document.getElementById("run-error");
      box.textContent = error.message; // another project's run is a 404, as in the API
      box.hidden = false;
      return false;
    }
    renderRun(run);
    const total = (run.result_counts || {}).total ?? 0;
    if (total !== itemsShown && cursors.length === 1) {
      itemsShown = total;
      await refreshItems();
    }
    document.body.dataset.refreshed = String(Date.now());
    return run.status === "queued" || run.status === "in_progress";
  }
  ORFT.poll(refresh, 2000);
})();
