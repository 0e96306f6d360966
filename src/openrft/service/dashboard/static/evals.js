// The project's evals, newest first (a job's eval links to its job).
"use strict";

(async () => {
  if (!(await ORFT.start())) return;
  const { el } = ORFT;
  let after = null;
  const body = document.querySelector("#evals tbody");

  async function load() {
    const query = "?order=desc&limit=50" + (after ? "&after=" + encodeURIComponent(after) : "");
    const page = await ORFT.api("/v1/evals" + query);
    for (const e of page.data) {
      const job = (e.metadata || {}).openrft_job_id;
      body.append(
        el(
          "tr",
          { "data-eval": e.id },
          el("td", {}, el("a", { href: "/dashboard/evals/" + encodeURIComponent(e.id) }, e.id)),
          el("td", {}, e.name),
          el("td", {}, job ? el("a", { href: "/jobs/" + encodeURIComponent(job) }, job) : "—"),
          el("td", {}, e.testing_criteria.map((c) => c.name + " (" + c.type + ")").join(", ")),
          el("td", { class: "nowrap" }, ORFT.time(e.created_at)),
        ),
      );
    }
    after = page.last_id;
    document.getElementById("more").hidden = !page.has_more;
    document.getElementById("evals-empty").hidden = body.children.length > 0;
  }
  document.getElementById("more").addEventListener("click", () => load().catch((e) => ORFT.flash(e.message)));
  await load();
  document.body.dataset.refreshed = String(Date.now());
})();
