"""ASGI entry point of the reader study (``medsynth study serve`` runs ``streamlit run`` on it):
the Streamlit app ``app.py`` behind :class:`media_gate.MediaGate`, so media files answer only
signed-in sessions."""

import sys
from pathlib import Path

from starlette.middleware import Middleware
from streamlit.starlette import App

sys.path.insert(0, str(Path(__file__).resolve().parent))

from media_gate import MediaGate  # noqa: E402

app = App(str(Path(__file__).resolve().parent / "app.py"), middleware=[Middleware(MediaGate)])
