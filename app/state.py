"""Streamlit glue shared by the pages: which storage to show, and the caches around `app.reader`,
`app.frames` and `app.analysis`.

Caching: one `Reader` per storage URL lives for the server's lifetime (`st.cache_resource`);
frames are `st.cache_data` keyed on (storage, study, trials key), where the trials key changes
only when a trial is added, finishes or reports, so 5,000 trials are turned into frames once.
"""
from __future__ import annotations

import argparse
import os
import sys

import pandas as pd
import streamlit as st

from app import analysis, export
from app import frames as _frames  # `frames` below is the cached function
from app.reader import Reader, StorageError
from nas.secrets import mask_url
from nas.storage import ARTIFACTS_ENV, DEFAULT_ARTIFACTS, STORAGE_ENV


def _args() -> argparse.Namespace:
    """`streamlit run app/main.py -- --storage URL --artifacts DIR`; env vars as fallbacks."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--storage")
    parser.add_argument("--artifacts")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args


def storage_url() -> str | None:
    return _args().storage or os.environ.get(STORAGE_ENV) or None


def artifacts_dir() -> str:
    return _args().artifacts or os.environ.get(ARTIFACTS_ENV) or DEFAULT_ARTIFACTS


@st.cache_resource(show_spinner=False)
def _reader(url: str) -> Reader:
    return Reader(url)  # a StorageError is not cached: the next rerun tries again


def reader() -> Reader | None:
    """The reader for the configured storage, or None after showing why there is none."""
    url = storage_url()
    if not url:
        st.error(f"No storage given. Start the dashboard with `streamlit run app/main.py -- --storage URL` "
                 f"or set {STORAGE_ENV}.")
        return None
    try:
        return _reader(url)
    except StorageError as e:
        st.error(f"**Storage unavailable.** {e}")
        return None


def trials_key(r: Reader, study: str) -> tuple:
    return _frames.trials_key(r.trials(study))


@st.cache_data(show_spinner="Loading trials…", max_entries=32)
def frames(url: str, study: str, key: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials frame, curves frame); `key` is only there to invalidate the cache."""
    trials = _reader(url).trials(study)
    return _frames.trials_frame(trials), _frames.curves_frame(trials)


@st.cache_data(show_spinner="Computing parameter importances…", max_entries=32)
def importances(url: str, study: str, key: tuple) -> tuple[dict[str, float], str | None]:
    return analysis.importances(_reader(url).study(study), seed=0)


@st.cache_data(show_spinner=False, max_entries=32, ttl=30)
def versions(url: str, study: str) -> pd.DataFrame:
    return _reader(url).versions(study)


@st.cache_data(show_spinner=False, max_entries=32, ttl=30)
def version_gains(url: str, study: str, key: tuple) -> pd.DataFrame:
    """Warm-vs-control gain per hypernet version (`nas.gain` over the study's trials and versions)."""
    r = _reader(url)
    return analysis.version_gains(r.trials(study), r.version_list(study))


@st.cache_data(show_spinner="Exporting the model…", max_entries=8)
def export_zip(url: str, study: str, number: int, artifact_id: str, artifacts: str) -> bytes:
    r = _reader(url)
    return export.export_zip(r.study(study), r.trial(study, number), artifacts, url, engine=r.engine)


def sidebar() -> None:
    """Which storage is shown (masked), the artifacts folder, and a reload button."""
    url = storage_url()
    with st.sidebar:
        st.caption("Storage (read-only)")
        st.code(mask_url(url) if url else "—", language=None, wrap_lines=True)
        st.caption(f"Artifacts: `{artifacts_dir()}`")
        if st.button("Reload", icon=":material/refresh:", help="Read new trials now"):
            st.rerun()
