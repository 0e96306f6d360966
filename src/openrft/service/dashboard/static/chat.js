// The chat panel: pick one of a job's models (its fine-tuned model, a checkpoint model, its base
// model) and talk to it through POST /v1/chat/completions with the page's API key. Streamed
// answers are read from the Server-Sent Events with fetch; refusals (an unknown model, a model
// still loading: 503 with Retry-After) are shown in the panel, and the message goes back into
// the input box to send again. The conversation lives in this page only.
"use strict";

(async () => {
  if (!(await ORFT.start())) return;
  const { el } = ORFT;
  const root = document.getElementById("chat");
  const jobId = root.dataset.jobId;
  const base = "/v1/fine_tuning/jobs/" + encodeURIComponent(jobId);
  const picker = document.getElementById("chat-model");
  const log = document.getElementById("chat-log");
  const input = document.getElementById("chat-input");
  const send = document.getElementById("chat-send");
  const errorBox = document.getElementById("chat-error");
  let messages = [];

  function showError(message) {
    errorBox.textContent = message || "";
    errorBox.hidden = !message;
  }

  // --- models -----------------------------------------------------------------------------

  // The checkpoint the job's fine-tuned model answers with: the promoted one, else the last.
  function servedCheckpoint(job, checkpoints) {
    const promoted = checkpoints.find((c) => c.id === job.promoted_checkpoint);
    if (promoted) return promoted;
    return checkpoints.reduce((a, c) => (!a || c.step_number > a.step_number ? c : a), null);
  }

  async function loadModels() {
    const job = await ORFT.api(base);
    const checkpoints = (await ORFT.api(base + "/checkpoints?limit=100")).data;
    const options = [];
    if (job.fine_tuned_model) {
      const served = servedCheckpoint(job, checkpoints);
      const step = served ? " (step " + served.step_number + ")" : "";
      options.push([job.fine_tuned_model, "Fine-tuned model" + step + ": " + job.fine_tuned_model]);
    }
    for (const c of checkpoints) {
      const name = c.fine_tuned_model_checkpoint;
      options.push([name, "Checkpoint step " + c.step_number + ": " + name]);
    }
    options.push([job.model, "Base model: " + job.model]);
    const wanted = new URLSearchParams(window.location.search).get("model");
    const option = ([value, label]) => el("option", { value, selected: value === wanted }, label);
    picker.replaceChildren(...options.map(option));
  }

  // --- the conversation -------------------------------------------------------------------

  function bubble(role, who, text) {
    const node = el(
      "div",
      { class: "msg " + role, "data-role": role },
      el("span", { class: "who" }, who),
      el("span", { class: "text" }, text),
    );
    log.append(node);
    document.getElementById("chat-empty").hidden = true;
    log.scrollTop = log.scrollHeight;
    return node;
  }

  function setText(node, text) {
    node.querySelector(".text").textContent = text;
    log.scrollTop = log.scrollHeight;
  }

  // The refusal in `response` (OpenAI's envelope) as an Error to show.
  async function refusal(response) {
    const body = await response.json().catch(() => null);
    const error = (body && body.error) || {};
    let message = error.message || response.status + " " + response.statusText;
    if (error.code) message = error.code + ": " + message;
    const retry = response.headers.get("Retry-After");
    if (response.status === 503 && retry) message += " (retry in " + retry + " s)";
    return new Error(message);
  }

  // Read OpenAI's chat.completion.chunk events; returns the text and the finish reason.
  async function readStream(response, node) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let text = "";
    let finish = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") return { text, finish };
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message || "the stream failed");
          const choice = (chunk.choices || []).find((c) => c.index === 0);
          if (!choice) continue;
          if (choice.delta && choice.delta.content) {
            text += choice.delta.content;
            setText(node, text);
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
    return { text, finish };
  }

  async function ask(model, node) {
    const stream = document.getElementById("chat-stream").checked;
    const body = {
      model,
      messages,
      temperature: Number(document.getElementById("chat-temperature").value),
      max_completion_tokens: Number(document.getElementById("chat-max-tokens").value),
      stream,
    };
    const response = await ORFT.api("/v1/chat/completions", {
      method: "POST",
      json: body,
      raw: true,
    });
    if (!response.ok) throw await refusal(response);
    if (stream) return readStream(response, node);
    const choice = (await response.json()).choices[0];
    return { text: choice.message.content || "", finish: choice.finish_reason };
  }

  async function submit() {
    const text = input.value;
    if (!text.trim() || send.disabled) return;
    const model = picker.value;
    showError("");
    input.value = "";
    send.disabled = true;
    root.dataset.busy = "true";
    messages.push({ role: "user", content: text });
    const mine = bubble("user", "You", text);
    const reply = bubble("assistant pending", model, "");
    try {
      const answer = await ask(model, reply);
      reply.classList.remove("pending");
      setText(reply, answer.text);
      if (!answer.text) reply.classList.add("muted");
      const note = answer.finish && answer.finish !== "stop" ? " · " + answer.finish : "";
      reply.querySelector(".who").textContent = model + note;
      messages.push({ role: "assistant", content: answer.text });
    } catch (error) {
      // the turn did not happen: take it back, and give the text back to send again
      messages.pop();
      mine.remove();
      reply.remove();
      input.value = text;
      document.getElementById("chat-empty").hidden = messages.length > 0;
      showError(error.message);
    } finally {
      send.disabled = false;
      delete root.dataset.busy;
    }
  }

  document.getElementById("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  document.getElementById("chat-clear").addEventListener("click", () => {
    messages = [];
    log.replaceChildren();
    document.getElementById("chat-empty").hidden = false;
    showError("");
  });

  try {
    await loadModels();
  } catch (error) {
    showError(error.message);
    return;
  }
  ORFT.ready(root);
})();
