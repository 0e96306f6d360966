"""Run an ASGI app on 127.0.0.1 in a background thread: a local judge for tests, benchmarks and
notebooks, reached over real HTTP.

`serve_in_thread(app)` picks a free port, waits until the server accepts connections, yields its
base URL (`http://127.0.0.1:PORT`), and shuts it down on exit. It is not for production serving:
use `openrft serve-model` (uvicorn in the foreground) for that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from openrft.errors import OpenRFTError

STARTUP_TIMEOUT = 30.0
"""Seconds to wait for the server to start listening."""


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` until the block ends; yields the base URL."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="openrft-local-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise OpenRFTError(f"the local server on {host} did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT)
