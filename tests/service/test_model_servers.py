"""Processes of one service share one model server per base model (`ModelServers` over the same
directory): the second connects to the first's server through its record instead of loading
the model again, and starts its own once that server is gone."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from openrft.service.model_servers import ModelServers, serving
from openrft.service.settings import Settings

HELLO = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


def test_two_processes_share_one_server_and_restart_it_when_gone(tmp_path: Path) -> None:
    from openrft.training.models import build_tiny_model

    tiny_llama = build_tiny_model(tmp_path / "tiny")
    settings = Settings(data_dir=tmp_path)

    async def scenario() -> None:
        first, second = ModelServers(settings), ModelServers(settings)
        try:
            one, other = await asyncio.gather(
                first.get(str(tiny_llama), "tiny"), second.get(str(tiny_llama), "tiny")
            )
            assert one.pid == other.pid  # one model loaded, not two
            assert [one.process is None, other.process is None].count(True) == 1
            answer = await other.client.post(f"{other.url}/v1/chat/completions", json=HELLO)
            assert answer.status_code == 200
            records = list((tmp_path / "model-servers").glob("*.json"))
            assert len(records) == 1
            assert stat.S_IMODE(records[0].stat().st_mode) == 0o600  # it holds the key

            owner, user = (first, second) if one.process is not None else (second, first)
            owned = owner.servers[str(tiny_llama)]
            await owner.close()  # the process that started it stops it
            assert not serving(owned.pid)
            adopted = user.servers[str(tiny_llama)]
            assert await user.died(adopted)
            fresh = await user.get(str(tiny_llama), "tiny")
            assert fresh.process is not None  # now its own
            assert fresh.pid != owned.pid
            answer = await fresh.client.post(f"{fresh.url}/v1/chat/completions", json=HELLO)
            assert answer.status_code == 200
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def test_a_shared_server_that_ends_while_loading_is_replaced_not_reported_failed(
    tmp_path: Path,
) -> None:
    """Seen in CI: an eval worker was killed while the model server it had started was still
    serving; the next worker adopted that server through its record, the server then exited
    with its parent, and the eval run failed `model_load_failed` ("exited (it was started by
    another process of this service)"). A server this process did not start has no load error
    of its own to report: its end means start one here."""
    from openrft.training.models import build_tiny_model

    tiny_llama = str(build_tiny_model(tmp_path / "tiny"))
    settings = Settings(data_dir=tmp_path)

    async def scenario() -> None:
        first, second = ModelServers(settings), ModelServers(settings)
        try:
            started = await first._live(tiny_llama, "tiny")  # spawned, still loading
            adopted = await second._live(tiny_llama, "tiny")  # found through its record
            assert adopted.process is None
            assert adopted.pid == started.pid
            assert started.process is not None
            started.process.kill()  # the process that started it is gone, and so is it
            await asyncio.to_thread(started.process.wait)
            own = await second.get(tiny_llama, "tiny")
            assert own.process is not None
            assert own.pid != started.pid
            answer = await own.client.post(f"{own.url}/v1/chat/completions", json=HELLO)
            assert answer.status_code == 200
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())
