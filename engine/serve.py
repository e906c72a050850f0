"""Start the dashboard: ``python -m engine.serve [streamlit options]`` (what ``zooscope serve`` runs).

``app.py`` declares its pages with ``st.navigation``. Streamlit also knows an older
scheme that runs any file in ``pages/`` directly when its URL is the first request a
fresh server sees, skipping ``app.py`` (and so the navigation and the shared sidebar).
This launcher switches that scheme off before the server starts, so a shared link
such as ``/landscape?zoo=...`` opens the same view on a just-started server.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"


def main(argv: list[str] | None = None) -> None:
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli as streamlit_cli

    PagesManager.uses_pages_directory = False
    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["streamlit", "run", str(APP), "--browser.gatherUsageStats", "false", *args]
    streamlit_cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
