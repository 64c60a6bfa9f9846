"""Streamlit dashboard over a logah-nas study storage (read-only). Entry point: app/main.py.

Not an installed package: it runs from a source checkout (`logah-nas dashboard`, or
`streamlit run app/main.py`). Modules: `reader` (the storage, read-only), `frames` (trials and
studies as DataFrames), `analysis` (warm start vs random, importances, best trial), `charts`
(plotly figures), `export` (a trial's model as .zip), `state`, `sections` and `views/` (Streamlit).
"""
