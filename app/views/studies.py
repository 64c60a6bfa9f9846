"""Studies in the storage: one row each; selecting a row opens the study page."""
import streamlit as st

from app import state
from app.reader import short_error

st.title("Studies")
reader = state.reader()
if reader is not None:
    try:
        df = reader.studies()
    except Exception as e:  # noqa: BLE001 - a broken study must not take the page down
        st.error(f"Could not list the studies in {reader.masked_url}: {short_error(e)}")
        st.stop()
    if df.empty:
        st.info(f"No studies in `{reader.masked_url}` yet. Start one with "
                "`logah-nas search storage=...`; this page shows it as soon as it is created.")
        st.stop()
    st.caption(f"{len(df)} studies in `{reader.masked_url}` · select a row to open it")
    # A fresh key after each pick: coming back to this page must not find the old selection and
    # jump straight to the study again.
    generation = st.session_state.setdefault("studies_table_generation", 0)
    event = st.dataframe(
        df, hide_index=True, on_select="rerun", selection_mode="single-row", key=f"studies_table_{generation}",
        column_config={
            "study": st.column_config.TextColumn("study", pinned=True),
            "best_value": st.column_config.NumberColumn("best value", format="%.4f"),
            "warm_share": st.column_config.ProgressColumn("warm-started", min_value=0.0, max_value=1.0,
                                                          format="percent"),
            "last_activity": st.column_config.DatetimeColumn("last activity", format="YYYY-MM-DD HH:mm:ss"),
        })
    rows = event.selection.rows if event is not None else []
    if rows:
        st.session_state["studies_table_generation"] = generation + 1
        st.switch_page("views/study.py", query_params={"study": df.iloc[rows[0]]["study"]})
    cols = st.columns(min(4, len(df)))
    for col, name in zip(cols, df["study"][:4]):
        col.page_link("views/study.py", label=f"Open **{name}**", icon=":material/open_in_new:",
                      query_params={"study": name})
