// The grader playground: parse a pasted grader, run it on one sample, audit it on a file.
"use strict";

(async () => {
  if (!(await ORFT.start())) return;
  const { el } = ORFT;
  const error = document.getElementById("grader-error");

  const EXAMPLES = {
    openai: {
      grader: JSON.stringify(
        {
          type: "multi",
          name: "answer",
          graders: {
            exact: {
              type: "string_check", name: "exact", operation: "eq",
              input: "{{ sample.output_text }}", reference: "{{ item.reference_answer }}",
            },
            similar: {
              type: "text_similarity", name: "similar", evaluation_metric: "fuzzy_match",
              input: "{{ sample.output_text }}", reference: "{{ item.reference_answer }}",
            },
          },
          calculate_output: "0.7 * exact + 0.3 * similar",
        },
        null,
        2,
      ),
      sample: "42",
      item: '{"reference_answer": "42"}',
    },
    seekr: {
      grader: [
        "# SeekrFlow: 10% format, 80% math-equal answer, 10% exact string",
        "reward_components:",
        "  format_reward_weight: 0.1",
        "  graders:",
        "    - type: math_accuracy",
        "      weight: 0.8",
        "    - type: string_check",
        "      operation: equals",
        "      weight: 0.1",
      ].join("\n"),
      sample: "<think>17 + 25 = 42</think><answer>42</answer>",
      item: '{"reference_answer": "42"}',
    },
  };
  function loadExample(name) {
    const example = EXAMPLES[name];
    if (!example) return;
    document.getElementById("grader").value = example.grader;
    document.getElementById("sample").value = example.sample;
    document.getElementById("item").value = example.item;
  }
  document.getElementById("example").addEventListener("change", (e) => loadExample(e.target.value));
  // The page ships the OpenAI example's sample and item; fill in its grader unless the user
  // has already typed one, and never overwrite what they typed while this script was loading.
  const grader = document.getElementById("grader");
  if (!grader.value.trim()) grader.value = EXAMPLES.openai.grader;
  // What the user writes here is what the New job page's "from the playground" grader uses.
  const keep = () => localStorage.setItem("openrft.playground.grader", grader.value);
  grader.addEventListener("input", keep);
  document.getElementById("example").addEventListener("change", keep);

  function showError(message) {
    error.textContent = message;
    error.hidden = !message;
  }

  // JSON is parsed here; anything else goes to the server's YAML parser.
  async function graderSpec() {
    const text = document.getElementById("grader").value;
    try {
      return JSON.parse(text);
    } catch {
      return (await ORFT.api("/dashboard/api/parse", { method: "POST", json: { text } })).value;
    }
  }

  function itemValue() {
    const text = document.getElementById("item").value.trim();
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error("The item is not valid JSON: " + e.message);
    }
  }

  function renderResult(result) {
    document.getElementById("reward").textContent = ORFT.number(result.reward, 4);
    const meta = result.metadata || {};
    document.getElementById("grader-name").textContent = (meta.name || "") + " (" + (meta.type || "") + ")";
    const sub = Object.entries(result.sub_rewards || {});
    document.querySelector("#sub-rewards tbody").replaceChildren(
      ...sub.map(([name, value]) =>
        el("tr", {}, el("td", {}, name), el("td", { class: "num" }, ORFT.number(value, 4))),
      ),
    );
    document.getElementById("sub-rewards").hidden = sub.length === 0;
    const errors = meta.errors || {};
    const set = Object.entries(errors).filter(([, v]) => v === true).map(([k]) => k);
    const flags = document.getElementById("flags");
    if (set.length) {
      flags.replaceChildren(
        el("p", { class: "error" }, "Error flags: " + set.join(", ")),
        ...set
          .map((flag) => errors[flag + "_details"] || errors[flag.replace(/_error$/, "_error_type")])
          .filter(Boolean)
          .map((detail) => el("pre", { class: "error" }, detail)),
      );
    } else {
      flags.replaceChildren(el("p", { class: "ok" }, "No error flags."));
    }
    document.getElementById("raw").textContent = JSON.stringify(result, null, 2);
    document.getElementById("result").hidden = false;
  }

  document.getElementById("run").addEventListener("click", async () => {
    showError("");
    try {
      const body = {
        grader: await graderSpec(),
        model_sample: document.getElementById("sample").value,
        item: itemValue(),
      };
      const result = await ORFT.api("/v1/fine_tuning/alpha/graders/run", { method: "POST", json: body });
      renderResult(result);
    } catch (e) {
      document.getElementById("result").hidden = true;
      showError(e.message);
    }
  });

  document.getElementById("validate").addEventListener("click", async () => {
    showError("");
    try {
      const body = { grader: await graderSpec() };
      await ORFT.api("/v1/fine_tuning/alpha/graders/validate", { method: "POST", json: body });
      ORFT.flash("The grader is valid.", "info");
    } catch (e) {
      showError(e.message);
    }
  });

  // --- audit ------------------------------------------------------------------------------

  let files = [];
  try {
    files = (await ORFT.api("/v1/files?limit=200")).data.filter(
      (f) => f.purpose !== "fine-tune-results",
    );
  } catch (e) {
    // the grader above still runs; say why there is nothing to audit
    document.getElementById("audit-summary").textContent = "Could not list files: " + e.message;
  }
  document
    .getElementById("audit-file")
    .replaceChildren(
      ...files.map((f) => el("option", { value: f.id }, f.filename + " (" + f.id + ")")),
    );

  document.getElementById("audit").addEventListener("click", async () => {
    const summary = document.getElementById("audit-summary");
    summary.textContent = "Running the probes…";
    summary.className = "small";
    try {
      const report = await ORFT.api("/dashboard/api/audit", {
        method: "POST",
        json: {
          grader: await graderSpec(),
          file_id: document.getElementById("audit-file").value,
          threshold: Number(document.getElementById("audit-threshold").value),
        },
      });
      const flagged = report.probes.filter((p) => p.flagged);
      summary.textContent =
        report.rows + " rows, " + report.probes.length + " probes: " +
        (flagged.length ? flagged.length + " flagged" : "none flagged");
      summary.className = "small " + (flagged.length ? "error" : "ok");
      document.querySelector("#audit-table tbody").replaceChildren(
        ...report.probes.map((p) =>
          el(
            "tr",
            { class: p.flagged ? "flagged" : null },
            el("td", { title: p.description }, p.probe, el("div", { class: "muted small" }, p.description)),
            el("td", { class: "num" }, ORFT.number(p.mean_reward)),
            el("td", { class: "num" }, ORFT.number(p.max_reward)),
            el("td", { class: "num" }, ORFT.number(p.pass_rate * 100, 0) + "%"),
            el("td", {}, p.flagged ? "FLAGGED " + p.warnings.join(" ") : "ok"),
          ),
        ),
      );
      document.getElementById("audit-table").hidden = false;
    } catch (e) {
      summary.textContent = e.message;
      summary.className = "small error pre";
    }
  });
  ORFT.ready(document.querySelector("main"));
})();
