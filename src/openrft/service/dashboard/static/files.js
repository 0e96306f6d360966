// The files page: upload a dataset and see its validation report, every problem by line.
"use strict";

(async () => {
  if (!(await ORFT.start())) return;
  const { el } = ORFT;

  function showReport(title, report, rejected) {
    document.getElementById("report-title").textContent = title;
    const n = report.problems.length;
    const parts = [report.lines + " lines", report.rows + " valid rows"];
    if (report.prompt_length) {
      const l = report.prompt_length;
      parts.push("prompt length " + l.min + "–" + l.max + " " + l.unit + " (median " + l.median + ")");
    }
    parts.push(n ? n + " problem(s)" : "no problems");
    for (const warning of report.warnings || []) parts.push("warning: " + warning);
    if (rejected) parts.push("the file was not stored; fix it and upload again");
    const summary = document.getElementById("report-summary");
    summary.textContent = parts.join(" · ");
    summary.className = "small " + (n ? "error" : "ok");
    document.querySelector("#problems tbody").replaceChildren(
      ...report.problems.map((p) =>
        el("tr", {}, el("td", { class: "num" }, p.line ?? "—"), el("td", {}, p.message)),
      ),
    );
    document.getElementById("problems").hidden = n === 0;
    document.getElementById("report").hidden = false;
  }

  async function graderSpec() {
    const text = document.getElementById("files-grader").value.trim();
    if (!text) return null;
    return (await ORFT.api("/dashboard/api/parse", { method: "POST", json: { text } })).value;
  }

  async function validate(file) {
    const grader = await graderSpec();
    const report = await ORFT.api("/dashboard/api/files/" + encodeURIComponent(file.id) + "/validation", {
      method: "POST",
      json: { grader },
    });
    showReport(file.filename + " (" + file.id + ")", report, false);
  }

  async function refreshFiles() {
    const files = (await ORFT.api("/v1/files?limit=200")).data;
    document.querySelector("#files tbody").replaceChildren(
      ...files.map((f) =>
        el(
          "tr",
          { "data-file-id": f.id },
          el("td", {}, f.id),
          el("td", {}, f.filename),
          el("td", {}, f.purpose),
          el("td", { class: "num" }, f.bytes),
          el("td", {}, ORFT.time(f.created_at)),
          el(
            "td",
            {},
            el("button", {
              type: "button",
              class: "link",
              onclick: () => validate(f).catch((e) => ORFT.flash(e.message)),
            }, "Validate"),
          ),
        ),
      ),
    );
    document.getElementById("files-empty").hidden = files.length > 0;
  }

  document.getElementById("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = document.getElementById("upload-file").files[0];
    if (!chosen) return;
    const form = new FormData();
    form.append("purpose", document.getElementById("upload-purpose").value);
    form.append("file", chosen, chosen.name);
    try {
      const file = await ORFT.api("/v1/files", { method: "POST", form });
      await refreshFiles();
      await validate(file);
    } catch (e) {
      if (e.status !== 400) {
        ORFT.flash(e.message);
        return;
      }
      // refused as not JSONL: show the full report (the API's message lists only the first few)
      ORFT.flash(e.message);
      const again = new FormData();
      again.append("file", chosen, chosen.name);
      const report = await ORFT.api("/dashboard/api/validate", { method: "POST", form: again });
      showReport(chosen.name + ": upload refused", report, true);
    }
  });

  ORFT.ready(document.getElementById("upload-form"));
  ORFT.poll(refreshFiles, 10000);
})();
