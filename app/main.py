"""Dashboard entry point: `streamlit run app/main.py -- --storage URL [--artifacts DIR]`.

Reads the study storage read-only (see `app.reader`); every page is a file in `app/views/`.
`app` is not an installed package: this script runs from the source tree (`logah-nas dashboard`
starts it through `nas.dashboard`) and puts the repository root on `sys.path` itself.
"""
from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `streamlit run` puts app/ on the path, not the repository root
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from app import state  # noqa: E402

st.set_page_config(page_title="logah-nas dashboard", page_icon=":material/hub:", layout="wide")
page = st.navigation([
    st.Page("views/studies.py", title="Studies", icon=":material/table_rows:", default=True),
    st.Page("views/study.py", title="Study", icon=":material/monitoring:", url_path="study"),
])
state.sidebar()
page.run()
