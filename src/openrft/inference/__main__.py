"""`python -m openrft.inference SOURCE --port P ...`: the model server `openrft serve` starts for
one base model (`openrft.service.model_servers`), with LoRA adapters enabled.

It is `openrft serve-model`'s app over `load_backend(...)` with `max_adapters` set (vLLM's
engine where vLLM and a CUDA device are there, else `TransformersBackend` with its batching
settings: `--batch-window-ms`, `--max-batch-rows`), bound to 127.0.0.1, requiring the
bearer key in `$OPENRFT_MODEL_SERVER_KEY` (only the service that started it can ask it to load
a checkpoint), and exiting when its parent process goes away so a killed service leaves no
model resident. It is not a user command: use `openrft serve-model`.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

KEY_ENV = "OPENRFT_MODEL_SERVER_KEY"
"""The variable holding the bearer key the service sends."""


def watch_parent(parent: int) -> None:
    """Exit as soon as `parent` is no longer this process's parent."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m openrft.inference")
    parser.add_argument("source", help="base model: HF directory, cached hub id, or default")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default=None)
    parser.add_argument("--max-adapters", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument(
        "--batch-window-ms",
        type=float,
        default=5.0,
        help="how long to wait for more requests to batch with the first one",
    )
    parser.add_argument("--max-batch-rows", type=int, default=16, help="most rows in a batch")
    parser.add_argument("--backend", default="auto", help="auto, transformers or vllm")
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        threading.Thread(target=watch_parent, args=(args.parent_pid,), daemon=True).start()

    import uvicorn

    from openrft.inference.app import create_app
    from openrft.inference.backends import load_backend

    backend = load_backend(
        args.source,
        args.backend,
        args.name,
        args.max_tokens,
        args.max_adapters,
        batch_window=args.batch_window_ms / 1000,
        max_batch_rows=args.max_batch_rows,
    )
    app = create_app(backend, api_key=os.environ.get(KEY_ENV) or None)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
