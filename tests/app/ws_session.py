"""A Streamlit session without a browser: the websocket protocol the browser speaks, from Python.

Each connection to ``/_stcore/stream`` is one session on the server (its own session state
and script runs), exactly as a browser tab is, but nothing is drawn, so eight of them cost
the server what eight readers cost and the client next to nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import websockets
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

__all__ = ["Run", "Session"]


@dataclass
class Run:
    """What one script run sent: its text (titles, markdown, alerts), problems, and the final URL query."""

    page: str
    status: str = ""
    texts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # exceptions and st.error alerts
    query: str = ""
    reruns: int = 0  # times the script restarted itself (st.rerun) before it finished

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


class Session:
    """``async with Session(url) as s: run = await s.run("landscape", "zoo=...")``."""

    def __init__(self, http_url: str, timeout: float = 120.0):
        self.url = http_url.replace("http://", "ws://") + "/_stcore/stream"
        self.timeout = timeout
        self._ws = None

    async def __aenter__(self) -> Session:
        self._ws = await websockets.connect(self.url, subprotocols=["streamlit"], max_size=None,
                                            open_timeout=self.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        await self._ws.close()

    async def clear_cache(self) -> None:
        """Send what the app menu's "Clear cache" sends; any client may, signed in or not."""
        msg = BackMsg()
        msg.clear_cache = True
        await self._ws.send(msg.SerializeToString())

    async def run(self, page: str = "", query: str = "") -> Run:
        """Run the app for ``page`` (its url path; "" is the default page) and collect what it sends."""
        msg = BackMsg()
        msg.rerun_script.query_string = query
        msg.rerun_script.page_name = page
        await self._ws.send(msg.SerializeToString())
        run = Run(page)
        while True:
            fwd = ForwardMsg()
            fwd.ParseFromString(await asyncio.wait_for(self._ws.recv(), self.timeout))
            kind = fwd.WhichOneof("type")
            if kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                _collect(fwd.delta.new_element, run)
            elif kind == "page_info_changed":
                run.query = fwd.page_info_changed.query_string
            elif kind == "script_finished":
                run.status = ForwardMsg.ScriptFinishedStatus.Name(fwd.script_finished)
                if run.status != "FINISHED_EARLY_FOR_RERUN":
                    return run
                run.texts.clear()  # the script called st.rerun(): what counts is the run that follows
                run.reruns += 1


def _collect(element, run: Run) -> None:
    kind = element.WhichOneof("type")
    if kind == "exception":
        run.problems.append(f"{element.exception.type}: {element.exception.message}")
    elif kind == "alert":
        run.texts.append(element.alert.body)
        if element.alert.format == Alert.ERROR:
            run.problems.append(element.alert.body)
    elif kind in ("markdown", "heading"):
        run.texts.append(getattr(element, kind).body)
