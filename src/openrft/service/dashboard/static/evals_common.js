// Shared by the eval and eval-run pages: how a data source row, a sample and grades show.
"use strict";

const EVALS = {
  // The row's prompt: its last message, else a `prompt` field, else the whole row.
  prompt(item) {
    if (!item) return "—";
    const messages = item.messages;
    if (Array.isArray(messages) && messages.length) {
      const last = messages[messages.length - 1];
      return typeof last.content === "string" ? last.content : JSON.stringify(last.content);
    }
    if (item.prompt !== undefined) return String(item.prompt);
    return JSON.stringify(item);
  },

  // The row's reference: `reference_answer` (or `reference`), else its other fields.
  reference(item) {
    if (!item) return "—";
    const found = item.reference_answer ?? item.reference;
    if (found !== undefined) return typeof found === "string" ? found : JSON.stringify(found);
    const rest = Object.fromEntries(
      Object.entries(item).filter(([k]) => k !== "messages" && k !== "tools"),
    );
    return Object.keys(rest).length ? JSON.stringify(rest) : "—";
  },

  output(sample) {
    if (!sample || !Array.isArray(sample.output)) return "";
    return sample.output.map((m) => m.content ?? "").join("");
  },

  // One line per criterion: "name: score ✓/✗" (and a multi's sub-rewards under it).
  grades(results) {
    const { el } = ORFT;
    return el(
      "ul",
      { class: "plain" },
      ...(results || []).map((r) =>
        el(
          "li",
          { class: r.passed ? "ok" : "error", "data-criterion": r.name },
          r.name + ": " + ORFT.number(r.score) + (r.passed ? " ✓" : " ✗"),
          r.error ? el("div", { class: "small" }, JSON.stringify(r.error)) : null,
          r.sub_rewards
            ? el(
                "div",
                { class: "small muted" },
                Object.entries(r.sub_rewards)
                  .map(([k, v]) => k + " " + ORFT.number(v))
                  .join(", "),
              )
            : null,
        ),
      ),
    );
  },

  rate(passed, failed) {
    const total = passed + failed;
    return total ? ORFT.number((100 * passed) / total, 0) + "%" : "—";
  },

  page(path) {
    return "/dashboard/evals/" + path;
  },
};

window.EVALS = EVALS;
