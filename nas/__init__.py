"""Warm-started architecture search: the application on top of the `hypernet` library.

Import-light (nothing here loads torch, torch_geometric or streamlit), so the CLI answers `--help`
and a config error at once.
"""
__version__ = "0.1.0"
