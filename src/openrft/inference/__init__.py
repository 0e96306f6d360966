"""Model inference: `openrft serve-model`, an OpenAI-compatible chat completions server over one
model (the fine-tuning API is `openrft.service`, a different server).

`app.create_app(backend)` builds the FastAPI app (`/v1/chat/completions`, `/v1/models`,
`/health`); `backends` holds what answers: a Hugging Face model or OpenRFT (LoRA) checkpoint run
with transformers (or vLLM when installed), and a scripted backend that answers from rules, for
exact tests and benchmarks. Users deploy tuned checkpoints with it; the model graders' tests use
it as a real local judge; `local.serve_in_thread` runs either app on a free local port. Errors go
out in the service's envelope (`openrft.api_errors`). It serves one model per process;
concurrent requests are batched and `stream: true` is answered token by token (`backends`,
`batching`). `python -m openrft.inference` (`__main__.py`) is the same app with LoRA adapters
loaded on demand over the base model: the model server `openrft serve` starts per base model.
"""
