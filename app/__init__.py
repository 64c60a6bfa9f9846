"""Streamlit dashboard over a logah-nas study storage (read-only). Entry point: app/main.py."""
