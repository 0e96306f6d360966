// The New job page: data, base model, grader and hyperparameters; a pre-flight-only job
// (`openrft.preflight.only`) whose verdict, reward distribution and sampled completions are shown;
// then the real job (with `preflight.force` when the verdict was a failure), and on to its page.
// Everything goes through the public API with the page's key; /dashboard/api adds the `auto`
// values (new-job/defaults), dataset reports (files/{id}/validation) and the pre-flight report
// (jobs/{id}/preflight). Server text is only ever put in the page with textContent.
"use strict";

(async () => {
  if (!(await ORFT.start())) return;
  const { el } = ORFT;
  const form = document.getElementById("new-job");
  const startButton = document.getElementById("start");
  const PLAYGROUND = "openrft.playground.grader";
  const ROLES = ["training", "validation"];
  const datasets = { training: null, validation: null }; // {file, report}
  let defaults = null;
  let preflight = null; // {jobId, snapshot, report}

  const show = (id, on) => (document.getElementById(id).hidden = !on);

  function showError(message) {
    const box = document.getElementById("form-error");
    box.textContent = message || "";
    box.hidden = !message;
  }

  // `text` parsed as JSON; else an error saying where it breaks. The browser's JSON.parse
  // often names no position, so the server's parser (Python's json) locates the error.
  async function parseJson(what, text) {
    try {
      return JSON.parse(text);
    } catch (error) {
      let located;
      try {
        located = await ORFT.api("/dashboard/api/new-job/json", { method: "POST", json: { text } });
      } catch (refused) {
        throw new Error(what + " is " + refused.message);
      }
      return located.value; // JSON the browser refuses but Python reads (NaN): let the API judge
    }
  }

  function numberOrText(raw) {
    const n = Number(raw);
    return raw !== "" && Number.isFinite(n) ? n : raw; // the API says what is wrong with text
  }

  // --- the grader -------------------------------------------------------------------------

  const SEEKR_TYPES = {
    math_accuracy: [],
    string_check: ["equals", "not_equals", "contains", "case_insensitive_contains"],
    text_similarity: ["bleu", "rouge"],
    format_check: [],
    llm: [],
  };

  function seekrRow(type, operation, weight) {
    const ops = el("select", { class: "seekr-operation" });
    const kind = el(
      "select",
      { class: "seekr-type" },
      ...Object.keys(SEEKR_TYPES).map((t) => el("option", { value: t, selected: t === type }, t)),
    );
    const fillOps = () => {
      const names = SEEKR_TYPES[kind.value];
      ops.replaceChildren(
        ...(names.length ? names : ["—"]).map((o) =>
          el("option", { value: names.length ? o : "", selected: o === operation }, o),
        ),
      );
      ops.disabled = names.length === 0;
    };
    kind.addEventListener("change", fillOps);
    fillOps();
    const row = el(
      "tr",
      { class: "seekr-grader" },
      el("td", {}, kind),
      el("td", {}, ops),
      el(
        "td",
        {},
        el("input", {
          class: "seekr-weight", type: "text", inputmode: "decimal", size: 6, placeholder: "none",
          value: weight ?? "",
        }),
      ),
      el("td", {}, el("button", { type: "button", class: "link", onclick: () => remove() }, "Remove")),
    );
    const remove = () => {
      row.remove();
      changed();
    };
    return row;
  }

  function seekrSpec() {
    const graders = [...document.querySelectorAll("#seekr-graders tbody tr")].map((row) => {
      const entry = { type: row.querySelector(".seekr-type").value };
      const operation = row.querySelector(".seekr-operation").value;
      if (operation) entry.operation = operation;
      const weight = row.querySelector(".seekr-weight").value.trim();
      if (weight) entry.weight = numberOrText(weight);
      return entry;
    });
    const components = { graders };
    const format = document.getElementById("seekr-format").value.trim();
    if (format) components.format_reward_weight = numberOrText(format);
    return { reward_components: components };
  }

  function graderSource() {
    return form.querySelector("input[name=grader-source]:checked").value;
  }

  // The grader as the job will send it; a parse problem raises with where it is.
  async function graderSpec() {
    const source = graderSource();
    if (source === "seekr") return seekrSpec();
    const text =
      source === "json"
        ? document.getElementById("grader-json").value
        : localStorage.getItem(PLAYGROUND) || "";
    if (!text.trim()) {
      throw new Error(
        source === "json"
          ? "Write a grader: an OpenAI grader object such as {\"type\": \"string_check\", …}"
          : "The playground has no grader yet: write one at /playground, then press Reload",
      );
    }
    let value;
    if (source === "json") {
      value = await parseJson("The grader", text);
    } else {
      try {
        value = JSON.parse(text);
      } catch {
        value = (await ORFT.api("/dashboard/api/parse", { method: "POST", json: { text } })).value;
      }
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new Error("The grader must be a JSON object, such as {\"type\": \"string_check\", …}");
    }
    return value;
  }

  let checkedGrader = null; // the last grader the server accepted, as JSON text
  async function checkGrader() {
    const status = document.getElementById("grader-status");
    status.hidden = false;
    try {
      const grader = await graderSpec();
      const normal = await ORFT.api("/v1/fine_tuning/alpha/graders/validate", {
        method: "POST",
        json: { grader },
      });
      status.textContent = "Valid: " + normal.grader.type + " grader " + JSON.stringify(normal.grader.name || "");
      status.className = "small ok";
      document.getElementById("grader-compiled").textContent = JSON.stringify(normal.grader, null, 2);
      show("grader-compiled-box", true);
      const text = JSON.stringify(grader);
      if (text !== checkedGrader) {
        checkedGrader = text;
        for (const role of ROLES) if (datasets[role]) validate(role, datasets[role].file);
      }
      return grader;
    } catch (error) {
      status.textContent = error.message;
      status.className = "small error pre";
      show("grader-compiled-box", false);
      checkedGrader = null;
      return null;
    }
  }

  function showSource() {
    const source = graderSource();
    for (const panel of document.querySelectorAll(".grader-panel")) {
      panel.hidden = panel.dataset.source !== source;
    }
    if (source === "playground") {
      const text = localStorage.getItem(PLAYGROUND);
      document.getElementById("playground-grader").textContent = text || "(nothing yet)";
    }
  }

  // --- data -------------------------------------------------------------------------------

  let files = [];
  async function loadFiles(selected) {
    files = (await ORFT.api("/v1/files?limit=200")).data.filter((f) => f.purpose !== "fine-tune-results");
    for (const role of ROLES) {
      const pick = document.getElementById(role + "-pick");
      const keep = selected && selected.role === role ? selected.id : pick.value;
      pick.replaceChildren(
        pick.options[0],
        ...files.map((f) => el("option", { value: f.id }, f.filename + " (" + f.id + ", " + f.bytes + " bytes)")),
      );
      pick.value = keep;
    }
  }

  function showReport(role, title, report, stored) {
    const n = report.problems.length;
    const parts = [title, report.lines + " lines", report.rows + " valid rows"];
    if (report.prompt_length) {
      const l = report.prompt_length;
      parts.push("prompt length " + l.min + "–" + l.max + " " + l.unit);
    }
    parts.push(n ? n + " problem(s)" : "no problems");
    for (const warning of report.warnings || []) parts.push("warning: " + warning);
    if (!stored) parts.push("the file was not stored: fix it and upload it again");
    const summary = document.getElementById(role + "-summary");
    summary.textContent = parts.join(" · ");
    summary.className = "small summary " + (n ? "error" : "ok");
    summary.hidden = false;
    document.querySelector("#" + role + "-problems tbody").replaceChildren(
      ...report.problems.map((p) => el("tr", {}, el("td", { class: "num" }, p.line ?? "—"), el("td", {}, p.message))),
    );
    show(role + "-problems", n > 0);
    plan();
  }

  function clearReport(role) {
    datasets[role] = null;
    show(role + "-summary", false);
    show(role + "-problems", false);
    plan();
  }

  async function validate(role, file) {
    datasets[role] = { file, report: null };
    const grader = checkedGrader ? JSON.parse(checkedGrader) : null;
    try {
      const report = await ORFT.api("/dashboard/api/files/" + encodeURIComponent(file.id) + "/validation", {
        method: "POST",
        json: { grader },
      });
      if (!datasets[role] || datasets[role].file.id !== file.id) return; // picked another since
      datasets[role].report = report;
      showReport(role, file.filename + " (" + file.id + ")", report, true);
    } catch (error) {
      const summary = document.getElementById(role + "-summary");
      summary.textContent = "Could not validate " + file.filename + ": " + error.message;
      summary.className = "small summary error";
      summary.hidden = false;
    }
  }

  async function upload(role, chosen) {
    const body = new FormData();
    body.append("purpose", "fine-tune");
    body.append("file", chosen, chosen.name);
    const summary = document.getElementById(role + "-summary");
    summary.textContent = "Uploading " + chosen.name + "…";
    summary.className = "small summary";
    summary.hidden = false;
    try {
      const file = await ORFT.api("/v1/files", { method: "POST", form: body });
      await loadFiles({ role, id: file.id });
      await validate(role, file);
    } catch (error) {
      if (error.status !== 400) {
        summary.textContent = "Upload failed: " + error.message;
        summary.className = "small summary error";
        return;
      }
      // refused: the full report, every problem with its line (the API's message has a few)
      clearReport(role);
      document.getElementById(role + "-pick").value = "";
      const again = new FormData();
      again.append("file", chosen, chosen.name);
      const report = await ORFT.api("/dashboard/api/validate", { method: "POST", form: again });
      showReport(role, chosen.name + ": upload refused", report, false);
    }
  }

  // --- model ------------------------------------------------------------------------------

  async function loadModels() {
    const models = (await ORFT.api("/v1/models")).data;
    const groups = [
      ["Base models", models.filter((m) => !m.id.startsWith("ft:"))],
      ["Fine-tuned models", models.filter((m) => m.id.startsWith("ft:") && !/:ckpt-/.test(m.id))],
      ["Checkpoints", models.filter((m) => m.id.startsWith("ft:") && /:ckpt-/.test(m.id))],
    ];
    const wanted = new URLSearchParams(window.location.search).get("model");
    document.getElementById("model").replaceChildren(
      ...groups
        .filter(([, list]) => list.length)
        .map(([label, list]) =>
          el("optgroup", { label }, ...list.map((m) => el("option", { value: m.id, selected: m.id === wanted }, m.id))),
        ),
    );
  }

  // --- hyperparameters --------------------------------------------------------------------

  function hpValue(name) {
    const raw = document.getElementById("hp-" + name).value.trim();
    if (!raw || raw === "auto" || (name === "reasoning_effort" && raw === "default")) return "auto";
    return name === "reasoning_effort" ? raw : numberOrText(raw);
  }

  function effective(name) {
    const value = hpValue(name);
    return value === "auto" ? defaults.hyperparameters[name].auto : value;
  }

  function generations(multiplier) {
    const g = defaults.generations;
    return Math.min(g.max, Math.max(g.min, Math.round(g.base * multiplier)));
  }

  function sets(name) {
    const value = effective(name);
    if (typeof value !== "number" && name !== "reasoning_effort") return "—";
    if (name === "learning_rate_multiplier") {
      return "learning_rate " + Number((value * defaults.learning_rate).toPrecision(3));
    }
    if (name === "compute_multiplier") return "num_generations " + generations(value);
    if (name === "reasoning_effort") {
      return "max_completion_length " + defaults.reasoning_tokens[value] + " tokens";
    }
    return name + " " + value;
  }

  const EFFORTS = ["default", "low", "medium", "high"];
  function hpRows() {
    const body = document.querySelector("#hyperparameters tbody");
    for (const [name, hp] of Object.entries(defaults.hyperparameters)) {
      const plain = hp.means.startsWith(name + " "); // "batch_size 4" says no more than "auto = 4"
      const input =
        name === "reasoning_effort"
          ? el("select", { id: "hp-" + name }, ...EFFORTS.map((v) => el("option", { value: v }, v)))
          : el("input", { id: "hp-" + name, type: "text", inputmode: "decimal", placeholder: "auto", size: 8 });
      body.append(
        el(
          "tr",
          { "data-hp": name },
          el("td", {}, el("code", {}, name), el("div", { class: "muted small" }, hp.description || "")),
          el("td", {}, input),
          el("td", { class: "auto" }, "auto = " + hp.auto, plain ? null : el("div", { class: "muted small" }, hp.means)),
          el("td", { class: "sets", id: "sets-" + name }),
        ),
      );
    }
  }

  async function overrides() {
    const text = document.getElementById("overrides").value.trim();
    if (!text) return {};
    const value = await parseJson("The OpenRFT settings field", text);
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new Error("The OpenRFT settings field must be a JSON object of TrainingConfig fields");
    }
    return value;
  }

  // What the steps will be, from the training report's rows (the native rule: n_epochs ×
  // rows // batch_size, unless max_steps).
  async function plan() {
    const out = document.getElementById("plan");
    if (!defaults) return;
    for (const name of Object.keys(defaults.hyperparameters)) {
      document.getElementById("sets-" + name).textContent = sets(name);
    }
    let extra = {};
    try {
      extra = await overrides();
    } catch {
      // reported when the pre-flight is asked for
    }
    const report = datasets.training && datasets.training.report;
    if (!report || !report.rows) {
      out.textContent = "Pick a training file to see how many steps the job will take.";
      return;
    }
    const batch = extra.batch_size ?? effective("batch_size");
    const epochs = extra.n_epochs ?? effective("n_epochs");
    const multiplier = effective("compute_multiplier");
    const gens = extra.num_generations ?? (typeof multiplier === "number" ? generations(multiplier) : NaN);
    let rows = report.rows;
    if (!datasets.validation) rows -= Math.min(100, Math.max(1, Math.floor(rows * 0.1)));
    if (typeof batch !== "number" || typeof epochs !== "number") {
      out.textContent = "";
      return;
    }
    const steps = extra.max_steps ?? epochs * Math.max(1, Math.floor(rows / batch));
    out.textContent =
      "≈ " + steps + " optimizer steps" +
      (extra.max_steps ? " (max_steps)" : " (" + epochs + " × " + rows + " training rows ÷ batch " + batch + ")") +
      ", " + batch * gens + " completions a step (" + batch + " prompts × " + gens + ")";
  }

  // --- the job body -----------------------------------------------------------------------

  async function baseBody() {
    const training = datasets.training;
    if (!training) throw new Error("Choose or upload a training file (section 1)");
    if (training.report && training.report.problems.length) {
      throw new Error("The training file has problems (listed in section 1): fix them and upload it again");
    }
    const validation = datasets.validation;
    if (validation && validation.report && validation.report.problems.length) {
      throw new Error("The validation file has problems (listed in section 1): fix them and upload it again");
    }
    const grader = await graderSpec();
    const hyperparameters = {};
    for (const name of Object.keys(defaults.hyperparameters)) {
      const value = hpValue(name);
      if (value !== "auto") hyperparameters[name] = value;
    }
    const body = {
      model: document.getElementById("model").value,
      training_file: training.file.id,
      method: { type: "reinforcement", reinforcement: { grader, hyperparameters } },
    };
    if (validation) body.validation_file = validation.file.id;
    const suffix = document.getElementById("suffix").value.trim();
    if (suffix) body.suffix = suffix;
    const seed = document.getElementById("seed").value.trim();
    if (seed && seed !== "auto") body.seed = numberOrText(seed);
    return { body, extra: await overrides() };
  }

  function withPreflight(extra, settings) {
    return Object.assign({}, extra, { preflight: Object.assign({}, extra.preflight || {}, settings) });
  }

  // --- the pre-flight ---------------------------------------------------------------------

  function fact(name, value) {
    return el("div", {}, el("dt", {}, name), el("dd", {}, value));
  }

  function pct(share) {
    return ORFT.number(100 * share, 0) + "%";
  }

  function text(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function renderReport(report) {
    const verdict = document.getElementById("verdict");
    const groups =
      report.groups_with_signal + " of " + report.prompts + " groups (" + pct(report.signal_share) +
      ") have rewards that differ";
    verdict.textContent = report.passed
      ? "Passed: " + groups + "; at least " + pct(report.min_signal_share) + " needed."
      : "Failed: " + groups + "; at least " + pct(report.min_signal_share) + " must, or GRPO has nothing to learn from.";
    verdict.className = "verdict " + (report.passed ? "ok" : "error");
    verdict.dataset.passed = String(report.passed);
    const r = report.reward || {};
    const set = report.settings || {};
    const took = report.seconds || {};
    const errors = Object.entries(report.errors || {}).map(([k, v]) => k + " " + v).join(", ") || "none";
    document.getElementById("preflight-facts").replaceChildren(
      fact("Samples", report.samples + " (" + report.prompts + " prompts × " + report.group_size + ")"),
      fact("Reward mean ± std", ORFT.number(r.mean) + " ± " + ORFT.number(r.std)),
      fact("Reward min / max", ORFT.number(r.min) + " / " + ORFT.number(r.max)),
      fact("Quartiles", (r.quartiles || []).map((q) => ORFT.number(q)).join(" / ") || "—"),
      fact("Zero-variance groups", pct(report.zero_variance_share)),
      fact("Truncated at max_completion_length", pct(report.truncated_share) + " (" + set.max_completion_length + " tokens)"),
      fact("Completion tokens (mean)", ORFT.number(report.completion_tokens_mean, 1)),
      fact("Grader errors", errors),
      fact("Sampling", "temperature " + set.temperature + ", top_p " + set.top_p + (set.constrained ? ", constrained" : "")),
      fact("Took", "sampling " + ORFT.number(took.sampling, 1) + " s, grading " + ORFT.number(took.grading, 1) + " s"),
      ...Object.entries(report.sub_grader_signal || {}).map(([name, share]) =>
        fact("Groups where " + name + " varies", pct(share)),
      ),
    );
    const bins = r.histogram || [];
    const top = Math.max(1, ...bins.map((b) => b.count));
    const last = bins.length - 1;
    document.getElementById("histogram").replaceChildren(
      ...bins.map((b, i) =>
        el(
          "div",
          { class: "bin", title: "[" + b.low.toFixed(2) + ", " + b.high.toFixed(2) + (i === last ? "]" : ")") + ": " + b.count },
          el("span", { class: "count" }, b.count || ""),
          el("div", { class: "bar", style: "height:" + Math.round((100 * b.count) / top) + "%" }),
          el("span", { class: "low" }, b.low.toFixed(1)),
        ),
      ),
    );
    document.getElementById("advice").replaceChildren(...(report.advice || []).map((tip) => el("li", {}, tip)));
    show("advice-box", (report.advice || []).length > 0);
    const notes = (s) => [s.truncated ? "truncated" : null, ...(s.errors || [])].filter(Boolean).join(", ");
    document.querySelector("#examples tbody").replaceChildren(
      ...(report.examples || []).map((s) =>
        el(
          "tr",
          {},
          el("td", {}, el("pre", {}, text(s.prompt))),
          el("td", { class: "completion" }, el("pre", {}, text(s.completion))),
          el("td", { class: "reference" }, el("pre", {}, text(s.reference))),
          el("td", { class: "num" }, ORFT.number(s.reward)),
          el("td", { class: "small" }, notes(s)),
        ),
      ),
    );
    document.querySelector("#slowest tbody").replaceChildren(
      ...(report.slowest || []).map((s) =>
        el(
          "tr",
          {},
          el("td", {}, el("pre", {}, text(s.completion))),
          el("td", { class: "num" }, ORFT.number(s.seconds, 4)),
          el("td", { class: "num" }, ORFT.number(s.reward)),
        ),
      ),
    );
    document.getElementById("preflight-message").textContent = report.message;
    show("preflight", true);
  }

  function setStart() {
    const note = document.getElementById("start-note");
    startButton.classList.remove("danger");
    if (!preflight || !preflight.report) {
      startButton.disabled = true;
      startButton.textContent = "Start";
      note.textContent = preflight && preflight.failedToRun
        ? "The pre-flight did not run: fix the error above and run it again."
        : "Run the pre-flight first.";
      return;
    }
    if (preflight.stale) {
      startButton.disabled = true;
      note.textContent = "The settings changed since the pre-flight: run it again.";
      return;
    }
    startButton.disabled = false;
    if (preflight.report.passed) {
      startButton.textContent = "Start";
      note.textContent = "Creates the job with these settings and opens its page.";
    } else {
      startButton.textContent = "Start anyway";
      startButton.classList.add("danger");
      note.textContent = "The pre-flight failed: the job trains anyway (preflight.force), though it may learn nothing.";
    }
  }

  async function snapshot() {
    const { body, extra } = await baseBody();
    return JSON.stringify([body, extra]);
  }

  async function runPreflight() {
    showError("");
    const button = document.getElementById("run-preflight");
    const status = document.getElementById("preflight-status");
    let made;
    try {
      const { body, extra } = await baseBody();
      const request = Object.assign({}, body, {
        openrft: withPreflight(extra, { only: true }),
        metadata: { dashboard: "preflight" },
      });
      button.disabled = true;
      made = await ORFT.api("/v1/fine_tuning/jobs", { method: "POST", json: request });
      preflight = { jobId: made.id, snapshot: JSON.stringify([body, extra]), report: null };
    } catch (error) {
      button.disabled = false;
      showError(error.message);
      return;
    }
    show("preflight", false);
    setStart();
    form.dataset.preflightJob = made.id;
    const mine = preflight;
    ORFT.poll(async () => {
      if (preflight !== mine) return false; // a newer pre-flight took over
      const found = await ORFT.api("/dashboard/api/jobs/" + encodeURIComponent(mine.jobId) + "/preflight");
      const link = el("a", { href: "/jobs/" + encodeURIComponent(mine.jobId) }, mine.jobId);
      status.replaceChildren("Pre-flight job ", link, ": ", ORFT.status(found.status));
      if (!ORFT.TERMINAL.includes(found.status)) return true;
      button.disabled = false;
      if (found.report) {
        mine.report = found.report;
        renderReport(found.report);
      } else {
        mine.failedToRun = true;
        const error = found.error || {};
        const code = error.code ? " (" + error.code + ")" : "";
        showError("The pre-flight job " + found.status + code + ": " + (error.message || "no report was written"));
      }
      form.dataset.preflight = found.report ? (found.report.passed ? "passed" : "failed") : "error";
      setStart();
      return false;
    }, 1000);
  }

  async function start() {
    showError("");
    if (!preflight || !preflight.report) return;
    startButton.disabled = true;
    try {
      const { body, extra } = await baseBody();
      if (JSON.stringify([body, extra]) !== preflight.snapshot) {
        preflight.stale = true;
        setStart();
        return;
      }
      const request = Object.assign({}, body, { metadata: { preflight_job: preflight.jobId } });
      const openrft = preflight.report.passed ? extra : withPreflight(extra, { force: true });
      if (Object.keys(openrft).length) request.openrft = openrft;
      const job = await ORFT.api("/v1/fine_tuning/jobs", { method: "POST", json: request });
      window.location.assign("/jobs/" + encodeURIComponent(job.id));
    } catch (error) {
      showError(error.message);
      setStart();
    }
  }

  // --- wiring -----------------------------------------------------------------------------

  let timer = null;
  function changed() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await checkGrader();
      plan();
      if (preflight && preflight.report) {
        let now = null;
        try {
          now = await snapshot();
        } catch {
          // an input the pre-flight did not run with
        }
        preflight.stale = now !== preflight.snapshot;
        setStart();
      }
    }, 300);
  }

  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("input", (event) => {
    if (!event.target.classList.contains("upload")) changed();
  });
  form.addEventListener("change", (event) => {
    const target = event.target;
    if (target.name === "grader-source") showSource();
    if (target.classList.contains("pick")) {
      const role = target.closest(".dataset").dataset.role;
      const file = files.find((f) => f.id === target.value);
      if (file) validate(role, file);
      else clearReport(role);
    }
    if (target.classList.contains("upload") && target.files[0]) {
      const role = target.closest(".dataset").dataset.role;
      upload(role, target.files[0]).finally(() => (target.value = ""));
    }
    changed();
  });
  document.getElementById("seekr-add").addEventListener("click", () => {
    document.querySelector("#seekr-graders tbody").append(seekrRow("string_check", "contains", ""));
    changed();
  });
  document.getElementById("playground-reload").addEventListener("click", () => {
    showSource();
    changed();
  });
  document.getElementById("run-preflight").addEventListener("click", runPreflight);
  startButton.addEventListener("click", start);

  const json = document.getElementById("grader-json");
  if (!json.value.trim()) {
    json.value = JSON.stringify(
      {
        type: "string_check",
        name: "answer",
        operation: "like",
        input: "{{ sample.output_text }}",
        reference: "{{ item.reference_answer }}",
      },
      null,
      2,
    );
  }
  document.querySelector("#seekr-graders tbody").append(seekrRow("math_accuracy", "", ""));

  try {
    [defaults] = await Promise.all([ORFT.api("/dashboard/api/new-job/defaults"), loadFiles(), loadModels()]);
  } catch (error) {
    showError(error.message);
    return;
  }
  hpRows();
  plan();
  showSource();
  await checkGrader();
  ORFT.ready(form);
  setStart(); // stays disabled until a pre-flight has a verdict
})();
