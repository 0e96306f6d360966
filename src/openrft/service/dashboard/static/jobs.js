// The jobs list: filters, progress and latest rewards, refreshed every few seconds.
"use strict";

(async () => {
  if (!(await ORFT.start())) return;
  const { el } = ORFT;
  const ACTIVE = ["validating_files", "queued", "running", "paused"];
  const tbody = document.querySelector("#jobs tbody");
  const more = document.getElementById("more");
  let limit = 50;

  function query() {
    const params = new URLSearchParams({ limit: String(limit) });
    const status = document.getElementById("filter-status").value;
    for (const s of status === "active" ? ACTIVE : status ? [status] : []) {
      params.append("status", s);
    }
    const q = document.getElementById("filter-q").value.trim();
    const meta = document.getElementById("filter-meta").value.trim();
    if (q) params.set("q", q);
    if (meta.includes("=")) params.set("meta", meta);
    return params;
  }

  function progress(job) {
    const p = job.progress;
    if (p.step === null || p.step === undefined) return "—";
    const share = p.total_steps ? Math.min(1, p.step / p.total_steps) : 0;
    return el(
      "div",
      { class: "mini-progress", title: Math.round(share * 100) + "%" },
      el("div", { class: "bar", style: "width:" + share * 100 + "%" }),
      el("span", {}, p.step + " / " + (p.total_steps ?? "?")),
    );
  }

  function row(job) {
    return el(
      "tr",
      { "data-job-id": job.id },
      el("td", {}, el("a", { href: "/jobs/" + encodeURIComponent(job.id) }, job.id)),
      el("td", {}, ORFT.status(job.status)),
      el("td", { class: "clip", title: job.model }, job.model),
      el("td", {}, job.suffix || "—"),
      el("td", {}, progress(job)),
      el("td", { class: "num" }, ORFT.number(job.progress.train_reward)),
      el("td", { class: "num" }, ORFT.number(job.progress.valid_reward)),
      el("td", {}, ORFT.time(job.created_at)),
      el("td", { class: "num" }, ORFT.duration(job.duration)),
    );
  }

  async function refresh() {
    const page = await ORFT.api("/dashboard/api/jobs?" + query());
    tbody.replaceChildren(...page.data.map(row));
    document.getElementById("jobs-empty").hidden = page.data.length > 0;
    more.hidden = !page.has_more;
    document.getElementById("updated").textContent =
      "updated " + new Date().toLocaleTimeString();
  }

  let timer = null;
  document.getElementById("filters").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => refresh().catch((e) => ORFT.flash(e.message)), 250);
  });
  document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
  more.addEventListener("click", () => {
    limit += 50;
    refresh();
  });
  ORFT.poll(refresh, 3000);
})();
