"""Dashboard pages, run by `st.navigation` from app/main.py (scripts, not imported modules).

Not called `pages/`: Streamlit would then also serve each file as a page of its own when a URL
such as /study is opened before app/main.py ran, bypassing the navigation and the sidebar.
"""
