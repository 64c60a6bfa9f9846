"""Warm-started architecture search.

Kept import-light on purpose: `hypernet` imports `nas.data` and `nas.training`, so this module
must not import `hypernet`, `torch_geometric` or `streamlit`.
"""
__version__ = "0.1.0"
