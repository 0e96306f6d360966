// One job: status and controls, live curves, checkpoints, evaluation samples and events.
// Polls every 2 s while the job can still change, then refreshes once more and stops.
"use strict";

(async () => {
  if (!(await ORFT.start())) return;
  const { el } = ORFT;
  const jobId = document.getElementById("job").dataset.jobId;
  const base = "/v1/fine_tuning/jobs/" + encodeURIComponent(jobId);
  const dash = "/dashboard/api/jobs/" + encodeURIComponent(jobId);
  const charts = new JobCharts();
  let cursor = 0;
  let job = null;
  let latest = {};
  let validSteps = -1;
  let sampleStep = null;
  let paths = {};

  // --- job header and controls ------------------------------------------------------------

  function renderJob() {
    const status = document.getElementById("job-status");
    status.replaceWith(Object.assign(ORFT.status(job.status), { id: "job-status" }));
    const end = job.finished_at || Date.now() / 1000;
    const facts = [
      ["Model", job.model],
      ["Suffix", job.suffix || "—"],
      ["Fine-tuned model", job.fine_tuned_model || "—"],
      ["Method", (job.method && job.method.type) || "—"],
      ["Created", ORFT.time(job.created_at)],
      ["Duration", ORFT.duration(end - job.created_at)],
      ["Trained tokens", job.trained_tokens ?? "—"],
      ["Training file", job.training_file],
      ["Validation file", job.validation_file || "—"],
    ];
    if (job.estimated_finish && !ORFT.TERMINAL.includes(job.status)) {
      facts.push(["Estimated finish", ORFT.time(job.estimated_finish)]);
    }
    for (const [key, value] of Object.entries(job.metadata || {})) facts.push([key, value]);
    document
      .getElementById("facts")
      .replaceChildren(...facts.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
    // the job's eval: its baseline, interval and final evaluations as runs, side by side
    const evalLink = document.getElementById("eval-link");
    evalLink.hidden = !job.eval_id;
    if (job.eval_id) evalLink.href = "/dashboard/evals/" + encodeURIComponent(job.eval_id);
    const error = document.getElementById("job-error");
    error.hidden = !job.error;
    if (job.error) error.textContent = job.error.code + ": " + job.error.message;
    const running = job.status === "running";
    document.getElementById("pause").disabled = !(running || job.status === "queued");
    document.getElementById("resume").disabled = job.status !== "paused";
    document.getElementById("cancel").disabled = ORFT.TERMINAL.includes(job.status);
  }

  function renderProgress() {
    const step = latest.step;
    const total = latest.total_steps;
    const share = total ? Math.min(1, step / total) : job.status === "succeeded" ? 1 : 0;
    document.getElementById("progress-bar").style.width = share * 100 + "%";
    const scores = latest.scores || {};
    const parts = [];
    if (typeof step === "number") parts.push("step " + step + " / " + (total ?? "?"));
    if (typeof scores.train_reward_mean === "number") {
      parts.push("train reward " + ORFT.number(scores.train_reward_mean));
    }
    document.getElementById("progress-text").textContent = parts.join(" · ") || "not started";
  }

  // Why a paused job paused (its budget, or a request), read once each time it pauses. Until
  // the worker's event saying so is stored (just after the status), the step is unknown: ask
  // again on the next refresh.
  let pausedShown = false;
  async function refreshPause() {
    const box = document.getElementById("job-paused");
    if (job.status !== "paused") {
      box.hidden = true;
      pausedShown = false;
      return;
    }
    if (pausedShown) return;
    const info = await ORFT.api(dash + "/pause");
    if (!info.paused) return;
    box.dataset.reason = info.reason;
    box.textContent = info.message; // it says which: "…reached its budget (max_steps 2)…"
    box.hidden = false;
    pausedShown = info.step !== null;
  }

  async function act(action) {
    try {
      job = await ORFT.api(base + "/" + action, { method: "POST" });
      renderJob();
      ORFT.flash(action + " requested", "info");
    } catch (error) {
      ORFT.flash(error.message);
    }
  }
  for (const action of ["pause", "resume", "cancel"]) {
    document.getElementById(action).addEventListener("click", () => {
      if (action === "cancel" && !window.confirm("Cancel this job? This cannot be undone.")) {
        return;
      }
      act(action).then(() => {
        if (!polling) startPolling();
      });
    });
  }

  // --- metrics ----------------------------------------------------------------------------

  async function refreshMetrics() {
    const page = await ORFT.api(dash + "/metrics?after=" + cursor);
    cursor = page.cursor;
    if (!page.points.length) return;
    charts.add(page.points);
    noteEvents(page.points);
    renderDiagnoses();
    latest = page.points[page.points.length - 1];
    const valid = page.points.filter((p) => p.scores && p.scores.valid_reward_mean != null);
    if (valid.length) validSteps = valid[valid.length - 1].step;
  }

  // --- diagnosis --------------------------------------------------------------------------

  // What the run said at each step (metrics lines' `events`): the live diagnosis's findings and
  // the validation carve-out, kept in step order (a resumed run's repeats replace the first).
  const said = new Map();
  function noteEvents(points) {
    for (const p of points) {
      for (const e of p.events || []) said.set((e.step ?? p.step) + "/" + e.code, e);
    }
  }

  function samplePairs(data) {
    const pairs = [...(data.fell || []), ...(data.rose || [])];
    if (!pairs.length) return null;
    const rows = pairs.map((pair) =>
      el(
        "tr",
        {},
        el("td", { class: "num" }, pair.row),
        el("td", {}, el("pre", {}, pair.prompt ?? "—")),
        el("td", {}, el("pre", {}, pair.reference ?? "—")),
        el("td", {}, el("pre", {}, pair.before.completion), ORFT.number(pair.before.reward)),
        el("td", {}, el("pre", {}, pair.after.completion), ORFT.number(pair.after.reward)),
      ),
    );
    const [from, to] = data.steps || [];
    return el(
      "details",
      {},
      el("summary", {}, "validation samples whose reward changed most"),
      el(
        "table",
        { class: "grid samples" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { class: "num" }, "Row"),
            el("th", {}, "Prompt"),
            el("th", {}, "Reference"),
            el("th", {}, "Step " + from),
            el("th", {}, "Step " + to),
          ),
        ),
        el("tbody", {}, ...rows),
      ),
    );
  }

  function renderDiagnoses() {
    const list = [...said.values()].sort((a, b) => a.step - b.step);
    const rows = list.map((e) =>
      el(
        "tr",
        { class: "level-" + e.level, "data-code": e.code, "data-step": e.step },
        el("td", { class: "num" }, e.step),
        el("td", {}, e.code.replaceAll("_", " ")),
        el("td", {}, e.action || "note"),
        el("td", {}, e.message, samplePairs(e.data || {})),
      ),
    );
    document.querySelector("#diagnoses tbody").replaceChildren(...rows);
    document.getElementById("diagnoses-empty").hidden = rows.length > 0;
  }

  // --- checkpoints ------------------------------------------------------------------------

  async function download(checkpoint) {
    const response = await ORFT.api(dash + "/checkpoints/" + checkpoint.id + "/archive", {
      raw: true,
    });
    if (!response.ok) {
      ORFT.flash("download failed: " + response.status);
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: jobId + "-step-" + checkpoint.step_number });
    link.download += ".tar.gz";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function showExport(checkpoint) {
    const box = document.getElementById("export-command");
    const dir = paths[checkpoint.id] || "<checkpoint dir>";
    box.textContent =
      "# merge the LoRA adapter into its base model (on the server):\n" +
      "openrft export '" + dir + "' --merge ./" + jobId + "-step-" + checkpoint.step_number;
    box.hidden = false;
  }

  // Make the fine-tuned model serve `checkpoint` (a succeeded job's only).
  async function promote(checkpoint) {
    try {
      job = await ORFT.api(base + "/checkpoints/" + checkpoint.id + "/promote", { method: "POST" });
      renderJob();
      await refreshCheckpoints();
      ORFT.flash("step " + checkpoint.step_number + " promoted to " + job.fine_tuned_model, "info");
    } catch (error) {
      ORFT.flash(error.message);
    }
  }

  // The checkpoint the fine-tuned model serves: the promoted one, else the last.
  function servedCheckpoint(list) {
    if (!job.fine_tuned_model) return null;
    const promoted = list.find((c) => c.id === job.promoted_checkpoint);
    return promoted || list.reduce((a, c) => (!a || c.step_number > a.step_number ? c : a), null);
  }

  async function refreshCheckpoints() {
    const page = await ORFT.api(base + "/checkpoints?limit=100");
    const list = page.data;
    const served = servedCheckpoint(list);
    const chat = "/jobs/" + encodeURIComponent(jobId) + "/chat?model=";
    if (list.some((c) => !(c.id in paths))) paths = (await ORFT.api(dash + "/checkpoints")).paths;
    const rewards = list.map((c) => c.metrics.valid_reward_mean).filter((v) => v != null);
    const best = rewards.length ? Math.max(...rewards) : null;
    const rows = list.map((c) =>
      el(
        "tr",
        { class: best !== null && c.metrics.valid_reward_mean === best ? "best" : null },
        el("td", {}, c.step_number),
        el("td", { class: "num" }, ORFT.number(c.metrics.valid_reward_mean)),
        el("td", { class: "num" }, ORFT.number(c.metrics.train_reward_mean)),
        el(
          "td",
          { class: "clip", title: c.fine_tuned_model_checkpoint },
          c === served ? el("span", { class: "status served" }, "fine-tuned model") : null,
          c === served ? " " : null,
          c.fine_tuned_model_checkpoint,
        ),
        el(
          "td",
          { class: "actions", "data-checkpoint": c.id },
          el("button", { type: "button", class: "link", onclick: () => download(c) }, "Download"),
          el("button", { type: "button", class: "link", onclick: () => showExport(c) }, "Export"),
          el(
            "a",
            { href: chat + encodeURIComponent(c.fine_tuned_model_checkpoint), style: "margin: 0 6px" },
            "Chat",
          ),
          el(
            "button",
            {
              type: "button",
              class: "link promote",
              disabled: job.status !== "succeeded" || c === served,
              title: "Serve this checkpoint as " + (job.fine_tuned_model || "the fine-tuned model"),
              onclick: () => promote(c),
            },
            "Promote",
          ),
        ),
      ),
    );
    document.querySelector("#checkpoints tbody").replaceChildren(...rows);
    document.getElementById("checkpoints-empty").hidden = list.length > 0;
  }

  // --- samples ----------------------------------------------------------------------------

  function subRewards(sub) {
    const entries = Object.entries(sub || {});
    if (!entries.length) return "—";
    return el(
      "ul",
      { class: "plain" },
      ...entries.map(([k, v]) => el("li", {}, k + ": " + ORFT.number(v))),
    );
  }

  // An agent rollout, turn by turn: the model's text and calls, the tools' answers.
  function trajectoryView(s) {
    const turns = s.trajectory.map((m) => {
      const calls = (m.tool_calls || []).map((c) =>
        el("div", { class: "tool-call" }, "→ " + c.name + "(" + (c.arguments ?? "") + ")"),
      );
      const text = m.content ? el("pre", {}, m.content) : null;
      return el("li", { class: "turn turn-" + m.role }, el("strong", {}, m.role), text, ...calls);
    });
    const flags = [s.dropped ? "dropped" : null, s.truncated ? "truncated" : null].filter(Boolean);
    const summary = el(
      "summary",
      {},
      s.trajectory.length + " messages" + (flags.length ? " · " + flags.join(", ") : ""),
    );
    return el(
      "div",
      { class: "trajectory" },
      el("pre", {}, s.completion ?? ""),
      el("details", {}, summary, el("ol", { class: "plain turns" }, ...turns)),
    );
  }

  async function refreshSamples() {
    const query = sampleStep === null ? "" : "?step=" + sampleStep;
    const result = await ORFT.api(dash + "/samples" + query);
    const select = document.getElementById("sample-step");
    const chosen = String(result.step);
    select.replaceChildren(
      ...result.steps.map((s) => el("option", { value: s, selected: String(s) === chosen }, s)),
    );
    const rows = result.samples.map((s) =>
      el(
        "tr",
        {},
        el("td", {}, el("pre", {}, s.prompt ?? "—")),
        el("td", {}, el("pre", {}, s.reference ?? "—")),
        el("td", {}, s.trajectory ? trajectoryView(s) : el("pre", {}, s.completion ?? "")),
        el("td", { class: "num reward-cell" }, ORFT.number(s.reward)),
        el("td", {}, subRewards(s.sub_rewards)),
      ),
    );
    document.querySelector("#samples tbody").replaceChildren(...rows);
    document.getElementById("samples-empty").hidden = rows.length > 0;
  }
  document.getElementById("sample-step").addEventListener("change", (event) => {
    sampleStep = Number(event.target.value);
    refreshSamples().catch((e) => ORFT.flash(e.message));
  });

  // --- events -----------------------------------------------------------------------------

  let events = [];
  function renderEvents() {
    const hide = document.getElementById("hide-metrics").checked;
    const shown = events.filter((e) => !(hide && e.type === "metrics"));
    document.querySelector("#events tbody").replaceChildren(
      ...shown.map((e) =>
        el(
          "tr",
          { class: "level-" + e.level + (e.type === "metrics" ? " metrics" : "") },
          el("td", { class: "nowrap" }, ORFT.time(e.created_at)),
          el("td", {}, e.level),
          el("td", {}, e.message),
        ),
      ),
    );
  }
  document.getElementById("hide-metrics").addEventListener("change", renderEvents);

  async function refreshEvents() {
    events = (await ORFT.api(base + "/events?limit=100")).data;
    renderEvents();
  }

  // --- the loop ---------------------------------------------------------------------------

  let shownValidSteps = -2;
  let polling = false;
  async function refresh() {
    job = await ORFT.api(base);
    await refreshMetrics();
    renderJob();
    renderProgress();
    await Promise.all([refreshCheckpoints(), refreshEvents(), refreshPause()]);
    if (validSteps !== shownValidSteps) {
      shownValidSteps = validSteps;
      await refreshSamples();
    }
    document.body.dataset.refreshed = String(Date.now());
    const done = ORFT.TERMINAL.includes(job.status);
    if (done) polling = false;
    return !done;
  }

  function startPolling() {
    polling = true;
    ORFT.poll(refresh, 2000);
  }
  startPolling();
})();
