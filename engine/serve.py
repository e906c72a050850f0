"""Start the dashboard: ``python -m engine.serve [streamlit options]`` (what ``zooscope serve`` runs).

``app.py`` declares its pages with ``st.navigation``. Streamlit also knows an older
scheme that runs any file in ``pages/`` directly when its URL is the first request a
fresh server sees, skipping ``app.py`` (and so the navigation and the shared sidebar).
This launcher switches that scheme off before the server starts, so a shared link
such as ``/landscape?zoo=...`` opens the same view on a just-started server.

Before the server answers, it imports what the pages use and freezes the heap (see
:func:`warm_process`), and it turns off Streamlit's full garbage collection after every
script run (``runner.postScriptGC``): with torch, plotly and pandas loaded, that collection
walked ~330,000 objects on every page run, two thirds of the server's CPU under the load test.

It also makes every HTTP response say the dashboard may not be framed by another site
(``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors 'none'``, against
clickjacking), and when the server stops it stops the job workers and closes the store
(``engine.jobs.resident``) before the process exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"

FRAME_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)


class FrameGuard:
    """ASGI middleware: add :data:`FRAME_HEADERS` to every HTTP response (replacing any same-named ones)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {name for name, _ in FRAME_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*headers, *FRAME_HEADERS]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def install_frame_guard() -> None:
    """Put :class:`FrameGuard` outermost in the middleware of the Streamlit server started next.

    Streamlit (1.5x and later) serves with Starlette and builds its middleware list in
    ``streamlit.web.server.starlette.starlette_app.create_streamlit_middleware``; this wraps that
    function. If a Streamlit release moves it, the server refuses to start rather than serve
    pages that can be framed.
    """
    try:
        from starlette.middleware import Middleware
        from streamlit.web.server.starlette import starlette_app
    except ImportError as exc:
        raise RuntimeError(f"cannot add the anti-framing headers: this Streamlit has no Starlette server ({exc}); "
                           "install the Streamlit version pyproject.toml names") from None
    make = getattr(starlette_app, "create_streamlit_middleware", None)
    if make is None:
        raise RuntimeError("cannot add the anti-framing headers: streamlit.web.server.starlette.starlette_app has no "
                           "create_streamlit_middleware; install the Streamlit version pyproject.toml names")
    if getattr(make, "zooscope_frame_guard", False):
        return

    def with_frame_guard():
        return [Middleware(FrameGuard), *make()]

    with_frame_guard.zooscope_frame_guard = True
    starlette_app.create_streamlit_middleware = with_frame_guard


# What the pages' first runs would otherwise import, in whichever script threads come first.
WARM_MODULES: tuple[str, ...] = (
    "numpy", "pandas", "pyarrow", "duckdb", "torch", "plotly.graph_objects", "plotly.io",
    "store", "engine.auth", "engine.config", "engine.figures", "engine.jobs", "engine.jobs.builtin_probes",
    "engine.report", "engine.train",
)

# Server options set before the user's own (a user's ``--runner.postScriptGC true`` still wins).
SERVER_OPTIONS: tuple[str, ...] = ("--browser.gatherUsageStats", "false", "--runner.postScriptGC", "false")


def warm_process(modules: tuple[str, ...] = WARM_MODULES) -> int:
    """Import ``modules`` now, collect once, and move every object alive into the permanent generation.

    - Imports: two sessions whose first page runs import the same package at once can deadlock in
      Python's import machinery (``_DeadlockError`` on ``engine.jobs.builtin_probes.convert``, seen
      under the load test); imported here, in one thread before any session, they never race.
    - ``gc.freeze()``: the modules, classes and functions loaded here live as long as the process;
      frozen, they are skipped by every later collection, so a collection costs what a page run
      allocated, not what the interpreter holds (~330,000 objects, ~0.2 CPU-s per full collection).

    Returns the number of objects frozen.
    """
    import gc
    import importlib

    for name in modules:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def main(argv: list[str] | None = None) -> None:
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli as streamlit_cli

    from engine.jobs import resident

    PagesManager.uses_pages_directory = False
    install_frame_guard()
    warm_process()
    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["streamlit", "run", str(APP), *SERVER_OPTIONS, *args]
    try:
        streamlit_cli.main(prog_name="streamlit")
    finally:  # the server stopped (SIGTERM, SIGINT, an error): stop the workers, close the store
        resident.close_all()


if __name__ == "__main__":
    main()
