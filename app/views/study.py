"""One study: search progress, warm start vs random init, trials, hypernet versions, export."""
import streamlit as st

from app import analysis, sections, state
from app.reader import StorageError
from nas.attrs import STUDY_DATA, STUDY_METRIC, STUDY_PACKAGE_VERSION, STUDY_SPACE

reader = state.reader()
if reader is None:
    st.stop()
names = reader.study_names()
if not names:
    st.title("Study")
    st.info(f"No studies in `{reader.masked_url}` yet.")
    st.stop()

wanted = st.query_params.get("study")
if wanted is not None and wanted not in names:
    st.warning(f"No study named `{wanted}` in `{reader.masked_url}`; showing `{names[0]}`.")
name = st.sidebar.selectbox("Study", names, index=names.index(wanted) if wanted in names else 0)
st.query_params["study"] = name

try:
    study = reader.study(name)
    trials_df, curves_df = state.frames(reader.url, name, state.trials_key(reader, name))
except StorageError as e:
    st.error(str(e))
    st.stop()
attrs = study.user_attrs
minimize = study.directions[0].name == "MINIMIZE"
metric = str(attrs.get(STUDY_METRIC, "objective")).replace("_", " ")
complete = trials_df[trials_df["state"] == "COMPLETE"]
best = analysis.best_trial(study)

st.title(name)
meta = [f"space **{attrs[STUDY_SPACE]}**" if STUDY_SPACE in attrs else None,
        f"data **{attrs[STUDY_DATA]}**" if STUDY_DATA in attrs else None,
        f"metric **{attrs.get(STUDY_METRIC, 'objective')}** ({', '.join(d.name.lower() for d in study.directions)})",
        f"logah-nas {attrs[STUDY_PACKAGE_VERSION]}" if STUDY_PACKAGE_VERSION in attrs else None]
st.caption(" · ".join(m for m in meta if m))
if STUDY_SPACE not in attrs:
    st.info("This study has no logah-nas study attrs (created by an older version or another tool); "
            "views that need them show what is available.")

known = trials_df["init"] != "unknown"
c = st.columns(5)
c[0].metric("Trials", len(trials_df))
c[1].metric("Completed", len(complete))
c[2].metric("Best value", "—" if best is None else f"{best.values[0]:.4f}")
c[3].metric("Warm-started", f"{(trials_df.loc[known, 'init'] == 'warm').mean():.0%}" if known.any() else "—")
c[4].metric("Pruned / failed", f"{(trials_df['state'] == 'PRUNED').sum()} / {(trials_df['state'] == 'FAIL').sum()}")
if trials_df.empty:
    st.info("This study has no trials yet.")
    st.stop()
if complete.empty:
    st.warning("No completed trials yet: history, importances and export appear when the first trial completes.")

tabs = st.tabs(["Overview", "Warm start vs random", "Trials", "Hypernet versions", "Best model & export"],
               key="tab", bind="query-params")
view = sections.StudyView(reader, name, study, trials_df, curves_df, best, metric, minimize)
for tab, render in zip(tabs, (sections.overview, sections.warm_start, sections.trials, sections.versions,
                              sections.best_model)):
    with tab:
        if tab.open is not False:  # only the open tab is computed (None: state not tracked, render all)
            render(view)
