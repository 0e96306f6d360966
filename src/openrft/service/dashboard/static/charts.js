// Line charts of a job's metrics over training steps, on Chart.js (vendor/chart.umd.min.js).
// A SeriesChart grows as points arrive: `add(label, step, value)` then `draw()`. The canvas's
// `data-points` attribute counts the points drawn, for tests and for the curious; `mark(step,
// value, note)` adds a ▲ marker (a diagnosis at that step), counted in `data-markers`.
"use strict";

// Chart.js's own tick labels, except tiny values: 0.000007 reads as 7.0e-6, not 7.000000E-6.
function tick(value, index, ticks) {
  if (value !== 0 && Math.abs(value) < 1e-3) return value.toExponential(1);
  return Chart.Ticks.formatters.numeric.call(this, value, index, ticks);
}

const PALETTE = [
  "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
  "#4b5563", "#65a30d",
];

class SeriesChart {
  constructor(canvas, options) {
    this.canvas = canvas;
    this.series = new Map();
    this.colors = new Map();
    this.points = 0;
    const opts = options || {};
    const scales = {
      x: { type: "linear", title: { display: true, text: "step" }, ticks: { precision: 0 } },
      y: {
        title: { display: Boolean(opts.yLabel), text: opts.yLabel || "" },
        ticks: { callback: tick },
        min: opts.min,
        suggestedMax: opts.max,
      },
    };
    if (opts.y2Label) {
      scales.y2 = {
        position: "right",
        title: { display: true, text: opts.y2Label },
        ticks: { callback: tick },
        grid: { drawOnChartArea: false },
      };
    }
    this.chart = new Chart(canvas, {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false,
        parsing: false,
        normalized: true,
        maintainAspectRatio: false,
        spanGaps: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              title: (items) => "step " + items[0].parsed.x,
              // a marker's tooltip is what fired there, not its height
              label: (item) => (item.raw && item.raw.note) || item.dataset.label + ": " + item.formattedValue,
            },
          },
        },
        scales,
      },
    });
    canvas.dataset.points = "0";
    canvas.dataset.markers = "0";
    this.markers = null;
  }

  // A ▲ at `step`, drawn at `value` (the curve's height there), whose tooltip reads `note`.
  mark(step, value, note) {
    if (typeof step !== "number") return;
    if (!this.markers) {
      this.markers = {
        label: "diagnosis",
        data: [],
        showLine: false,
        pointStyle: "triangle",
        pointRadius: 8,
        pointHoverRadius: 10,
        borderColor: "#b45309",
        backgroundColor: "#f59e0b",
      };
      this.chart.data.datasets.push(this.markers);
    }
    const y = typeof value === "number" && Number.isFinite(value) ? value : 0;
    const data = this.markers.data;
    if (data.some((p) => p.x === step && p.note === note)) return; // a resumed run's repeat
    data.push({ x: step, y, note });
    data.sort((a, b) => a.x - b.x);
    this.canvas.dataset.markers = String(data.length);
  }

  // Add one point to the series `label` (created on first use); non-numbers are skipped.
  // Series with the same `style.colorKey` share a colour (train and valid of one grader).
  add(label, step, value, style) {
    if (typeof value !== "number" || !Number.isFinite(value) || typeof step !== "number") return;
    let dataset = this.series.get(label);
    if (!dataset) {
      const { colorKey, ...rest } = style || {};
      const key = colorKey || label;
      if (!this.colors.has(key)) this.colors.set(key, PALETTE[this.colors.size % PALETTE.length]);
      const color = this.colors.get(key);
      dataset = Object.assign(
        {
          label,
          data: [],
          borderColor: color,
          backgroundColor: color,
          borderWidth: 2,
          pointRadius: 0,
          pointHitRadius: 6,
          tension: 0.15,
        },
        rest,
      );
      this.series.set(label, dataset);
      this.chart.data.datasets.push(dataset);
    }
    const last = dataset.data[dataset.data.length - 1];
    if (last && last.x === step) {
      last.y = value; // a resumed run re-reporting a step replaces it
      return;
    }
    dataset.data.push({ x: step, y: value });
    this.points += 1;
  }

  draw() {
    this.chart.update("none");
    this.canvas.dataset.points = String(this.points);
  }
}

// The five charts of a job page, fed with metrics lines (the `data` of metrics events).
class JobCharts {
  constructor() {
    const byId = (id) => document.getElementById(id);
    this.reward = new SeriesChart(byId("chart-reward"), { yLabel: "mean reward" });
    this.reward.colors.set("train", PALETTE[0]).set("valid", PALETTE[1]);
    this.graders = new SeriesChart(byId("chart-graders"), { yLabel: "mean reward" });
    this.length = new SeriesChart(byId("chart-length"), { yLabel: "tokens", min: 0 });
    this.kl = new SeriesChart(byId("chart-kl"), { yLabel: "KL", y2Label: "entropy" });
    this.errors = new SeriesChart(byId("chart-errors"), { yLabel: "share of samples", min: 0, max: 0.1 });
    this.errors.add("highest flag rate", 0, 0); // a flat zero line reads better than an empty chart
    // an agent job's tool calls (metrics lines with a `tools` section); hidden otherwise
    this.tools = new SeriesChart(byId("chart-tools"), {
      yLabel: "per rollout",
      y2Label: "share",
      min: 0,
    });
    this.toolsCard = byId("tools-card");
  }

  add(points) {
    const dots = { pointRadius: 3 };
    for (const p of points) {
      const step = p.step;
      const scores = p.scores || {};
      this.reward.add("train", step, scores.train_reward_mean, { colorKey: "train" });
      this.reward.add("valid", step, scores.valid_reward_mean, { colorKey: "valid", ...dots });
      for (const event of p.events || []) {
        if (event.level !== "warn") continue; // the carve-out note is not a finding
        const at = scores.train_reward_mean ?? scores.valid_reward_mean;
        this.reward.mark(event.step ?? step, at, event.message);
      }
      for (const [name, value] of Object.entries(scores.train_graders || {})) {
        this.graders.add("train · " + name, step, value, { colorKey: name });
      }
      for (const [name, value] of Object.entries(scores.valid_graders || {})) {
        const style = { colorKey: name, borderDash: [6, 4], ...dots };
        this.graders.add("valid · " + name, step, value, style);
      }
      const usage = p.usage || {};
      this.length.add("completion tokens (mean)", step, usage.completion_tokens_mean);
      const trl = p.trl || {};
      this.kl.add("KL", step, trl.kl);
      this.kl.add("entropy", step, trl.entropy, { yAxisID: "y2" });
      const errors = p.errors || {};
      const rates = Object.values(errors).filter((v) => typeof v === "number");
      if (Object.keys(p).length) this.errors.add("highest flag rate", step, Math.max(0, ...rates));
      for (const [flag, rate] of Object.entries(errors)) this.errors.add(flag, step, rate);
      const tools = p.tools;
      if (tools && typeof tools === "object") {
        this.toolsCard.hidden = false;
        this.tools.add("calls per rollout", step, tools.calls_per_rollout);
        this.tools.add("turns per rollout", step, tools.turns_mean);
        for (const [name, one] of Object.entries(tools.per_tool || {})) {
          this.tools.add(name + " calls per rollout", step, one.calls_per_rollout, { colorKey: name });
        }
        const share = { yAxisID: "y2", borderDash: [6, 4] };
        this.tools.add("call error rate", step, tools.error_rate, share);
        const rollouts = tools.rollouts || 0;
        const dropped = rollouts ? tools.dropped_rollouts / rollouts : null;
        this.tools.add("dropped rollouts", step, dropped, share);
      }
    }
    for (const chart of [this.reward, this.graders, this.length, this.kl, this.errors, this.tools]) {
      chart.draw();
    }
  }
}

window.JobCharts = JobCharts;
