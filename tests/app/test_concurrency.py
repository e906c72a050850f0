"""Eight sessions on one dashboard server read while a training job writes: no errors, no lost rows.

The sessions are real server sessions (websocket connections, as browser tabs make; see
ws_session.py) without the cost of drawing eight pages on a two-core machine.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from concurrent.futures import ThreadPoolExecutor

from app_conftest import TINY_CONFIG, train_with_cli, zoo_counts
from ws_session import Run, Session

import store

PAGES = ["", "landscape", "connectivity", "representations", "phases", "rashomon", "reports"]
N_SESSIONS = 8
DEADLINE_S = 240.0


async def _reader(server_url: str, index: int, state: dict) -> list[Run]:
    """Open pages again and again until the job is done: each time in a new session (as a reload
    does) and in the reader's one kept session (as a rerun does). Every third reader stays on the Zoo page."""
    runs = []
    pages = itertools.cycle(PAGES[index % 2::2] if index % 3 else [""])
    async with Session(server_url) as kept:
        while not state["done"] and time.monotonic() < state["deadline"]:
            page = next(pages)
            async with Session(server_url) as fresh:
                run = await fresh.run(page)
            runs.append(run)
            runs.append(await kept.run(page))
            if "Zoo · concurrent" in run.text and "4 of 4 runs shown (4 done)" in run.text:
                state["done"] = True
            await asyncio.sleep(1.0)  # leave the two cores some room for the training worker
    return runs


async def _scenario(server_url: str, store_path, config) -> list[Run]:
    async with Session(server_url) as first:  # the first session opens the store as its owner
        opened = await first.run()
    assert not opened.problems, opened.problems
    # The server owns the store, so the CLI hands the sweep over as a request.
    out = (await asyncio.to_thread(train_with_cli, store_path, config)).stdout
    assert "handed to that process" in out, out
    state = {"done": False, "deadline": time.monotonic() + DEADLINE_S}
    results = await asyncio.gather(*(_reader(server_url, i, state) for i in range(N_SESSIONS)))
    assert state["done"], f"the job's 4 runs were not all shown done within {DEADLINE_S} s"
    return [run for runs in results for run in runs]


def test_eight_sessions_read_while_a_job_writes(serve, trained_template, trained_store, tmp_path):
    server = serve(trained_store)
    config = tmp_path / "concurrent.toml"
    config.write_text(TINY_CONFIG.read_text().replace('name = "tiny"', 'name = "concurrent"'))

    # In a thread of its own: Playwright's sync API may hold an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        runs = pool.submit(asyncio.run, _scenario(server.url, trained_store, config)).result()

    print(f"{len(runs)} script runs in {N_SESSIONS} readers, {sum(r.reruns for r in runs)} restarted by a catalog "
          "change")
    problems = [(r.page, p) for r in runs for p in r.problems]
    assert not problems, problems
    assert {r.status for r in runs} == {"FINISHED_SUCCESSFULLY"}
    assert len(runs) >= 2 * N_SESSIONS
    during = [r for r in runs if "Zoo · concurrent" in r.text and "(4 done)" not in r.text]
    assert during, "no session read the zoo while its job was still writing"
    server.stop()
    assert "Traceback" not in server.log(), server.log()
    # Every row the job produced reached the catalog: the same sweep trained alone by the CLI
    # (the session's template store) has exactly as many.
    assert zoo_counts(trained_store, "concurrent") == zoo_counts(trained_template, "tiny")
    with store.open_store(trained_store, owner=False) as st_:
        train = st_.list_jobs(kind="train")  # pages the readers opened may have queued probes too
        assert len(train) == 2 and set(train["status"]) == {"done"}, train
