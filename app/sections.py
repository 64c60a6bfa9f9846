"""The tabs of the study page, one function each (the page script in views/study.py picks the open one)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
import pandas as pd
import streamlit as st
from optuna.trial import FrozenTrial

from app import analysis, charts, export, frames, state
from app.reader import ArtifactError, Reader, StorageError
from nas.attrs import CONFIG, HYPERNET_VERSION, INIT, N_PARAMS, SAFETY, STUDY_TEST_METRICS, WARM_START, WEIGHTS
from nas.safety import describe_safety
from nas.screen import describe_screening


@dataclass(frozen=True)
class StudyView:
    """What every tab needs about the study on screen."""

    reader: Reader
    name: str
    study: optuna.Study
    trials_df: pd.DataFrame
    curves_df: pd.DataFrame
    best: FrozenTrial | None
    metric: str
    minimize: bool

    @property
    def complete(self) -> pd.DataFrame:
        return self.trials_df[self.trials_df["state"] == "COMPLETE"]

    @property
    def known(self) -> pd.Series:
        return self.trials_df["init"] != "unknown"


def _fmt(x, spec: str = "{:.3f}") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else spec.format(x)


def overview(v: StudyView) -> None:
    """Optimization history and parameter importances."""
    left, right = st.columns([3, 2])
    with left:
        if v.complete.empty:
            st.info("No completed trials to plot.")
        else:
            st.plotly_chart(charts.history(v.trials_df, v.minimize, v.metric), key="history")
    with right:
        values, why = state.importances(v.reader.url, v.name, state.trials_key(v.reader, v.name))
        if values:
            st.plotly_chart(charts.importances(values), key="importances")
            st.caption("fANOVA on completed trials, fixed seed 0.")
        else:
            st.info(why.capitalize() + ".")


def warm_start(v: StudyView) -> None:
    """Val-loss curves of warm-started vs random-init trials and the gain summary."""
    if v.curves_df.empty:
        st.info("No intermediate values reported: trials of this study have no val-loss curves.")
    else:
        if not v.known.any():
            st.info(f"No trial has the `{WARM_START}` attr, so warm-started and random-init trials "
                    "cannot be told apart.")
        bands = analysis.mean_curves(v.curves_df)
        st.plotly_chart(charts.curves(v.curves_df, bands), key="curves")
        default = analysis.default_target(v.trials_df)
        m = st.columns([1.2, 1, 1, 1, 1], vertical_alignment="center")
        target = m[0].number_input(
            "Target val loss", value=default if default is not None else float(v.curves_df["value"].median()),
            format="%.4f", help="Default: the median final val loss of random-init trials.")
        gain = analysis.warm_start_gain(v.trials_df, v.curves_df, target)
        w, r, g = gain["warm"], gain["random"], gain["gain"]
        m[1].metric("Loss at step 0 (warm)", _fmt(w["loss at step 0 (mean)"]),
                    delta=_fmt(-g["loss at step 0 (mean)"], "{:+.3f} vs random"), delta_color="inverse")
        m[2].metric("Val-loss AUC (warm)", _fmt(w["val-loss AUC (mean loss over training)"]),
                    delta=_fmt(-g["val-loss AUC (mean loss over training)"], "{:+.3f} vs random"),
                    delta_color="inverse")
        m[3].metric("Steps to target (warm)", _fmt(w["steps to target (median)"], "{:.0f}"),
                    delta=_fmt(g["steps to target (median)"], "{:.2f}× faster"), delta_color="off")
        m[4].metric("Reached target (warm)", _fmt(w["reached target"], "{:.0%}"),
                    delta=_fmt(g["reached target"] * 100, "{:+.0f} pp vs random"))
        left, right = st.columns(2)
        left.plotly_chart(charts.gain(bands, target), key="gain")
        right.plotly_chart(charts.step0(v.trials_df), key="step0")
        st.table(gain.map(lambda x: _fmt(float(x), "{:.4g}")))
        st.caption("AUC: area under the val-loss curve divided by its step span (mean loss over training), "
                   "completed trials only. Gain: random minus warm; for steps and seconds, random ÷ warm.")
    safety = describe_safety(v.trials_df["safety"])
    if safety:
        st.caption(safety[0].upper() + safety[1:] + f" (trial attr `{SAFETY}`: a prediction that scored worse than "
                   "its init on a few val batches was blended toward it or replaced by it before training).")


def trials(v: StudyView) -> None:
    """Filterable, paged trial table and the detail of one trial."""
    def present(column: str, values: tuple[str, ...]) -> list[str]:
        return [x for x in values if (v.trials_df[column] == x).any()]

    f = st.columns([2, 2, 3])
    states = f[0].multiselect("State", frames.STATES, default=present("state", frames.STATES))
    inits = f[1].multiselect("Init", frames.INITS, default=present("init", frames.INITS))
    values = v.trials_df["value"].dropna()
    value_range = None
    if len(values) and values.min() < values.max():
        lo, hi = float(values.min()), float(values.max())
        picked = f[2].slider("Value range", lo, hi, (lo, hi), format="%.4f")
        if picked != (lo, hi):
            value_range = picked
    shown = frames.filter_trials(v.trials_df, states, inits, value_range)
    p = st.columns([1, 1, 4])
    size = p[0].selectbox("Rows per page", [25, 50, 100, 250], index=1)
    pages = max(1, math.ceil(len(shown) / size))
    number = p[1].number_input("Page", min_value=1, max_value=pages, value=1, step=1)
    rows, pages = frames.page(shown, number, size)
    p[2].caption(f"Trials {0 if rows.empty else (number - 1) * size + 1}–{(number - 1) * size + len(rows)} "
                 f"of {len(shown)} shown ({len(v.trials_df)} in the study) · select a row for its details")
    event = st.dataframe(rows, hide_index=True, on_select="rerun", selection_mode="single-row",
                         key=f"trials_table_{number}_{size}",
                         column_config={"value": st.column_config.NumberColumn(format="%.4f"),
                                        "loss_step0": st.column_config.NumberColumn(format="%.4f"),
                                        "safety": st.column_config.TextColumn(
                                            help="warm trials: the safety net kept the prediction, blended it "
                                                 "toward the init or replaced it by the init"),
                                        "screen_loss": st.column_config.NumberColumn(
                                            format="%.4f", help="predicted val loss that chose this startup "
                                                                "architecture (hypernet screening)")})
    picked_rows = event.selection.rows if event is not None else []
    numbers = v.trials_df["number"].tolist()
    default_number = int(rows.iloc[picked_rows[0]]["number"]) if picked_rows else (
        v.best.number if v.best is not None else numbers[-1])
    st.subheader("Trial detail")
    chosen = st.selectbox("Trial", numbers, index=numbers.index(default_number), key=f"detail_{default_number}")
    detail = frames.trial_detail(v.reader.trial(v.name, int(chosen)))
    if detail["fail_reason"]:
        st.warning(f"**{detail['state']}:** {detail['fail_reason']}")
    d = st.columns(3)
    d[0].metric("State", detail["state"])
    d[1].metric("Value", "—" if detail["value"] is None else f"{detail['value']:.4f}")
    d[2].metric("Parameters", "—" if detail["n_params"] is None else f"{detail['n_params']:,}")
    left, right = st.columns(2)
    with left:
        st.markdown("**Config**")
        st.json(detail["config"] if detail["config"] is not None else {"config": "not recorded"})
        st.markdown("**Params**")
        st.json(detail["params"], expanded=False)
    with right:
        st.markdown("**User attrs**")
        st.json(detail["user_attrs"], expanded=False)
        st.markdown("**Artifacts**")
        arts = frames.artifacts(v.reader.trial(v.name, int(chosen)))
        if arts.empty:
            st.caption("No artifacts recorded for this trial.")
        else:
            st.dataframe(arts, hide_index=True)
            _artifact_downloads(arts, int(chosen))


def _artifact_downloads(arts: pd.DataFrame, trial_number: int) -> None:
    """A download per artifact under the file name Optuna recorded at upload (the store names files
    by artifact id only). Read on request: weights can be tens of MB."""
    for row in arts.itertuples(index=False):
        name = row.filename or f"{row.artifact_id}.bin"
        key = f"artifact_{trial_number}_{row.artifact_id}"
        if st.button(f"Prepare {name}", key=f"prepare_{key}", icon=":material/draft:"):
            st.session_state[key] = True
        if not st.session_state.get(key):
            continue
        try:
            data = _read_artifact(str(row.artifact_id))
        except ArtifactError as e:
            st.error(str(e))
        else:
            st.download_button(f"Download {name}", data, file_name=name, key=f"download_{key}",
                               mime=row.mimetype or "application/octet-stream", icon=":material/download:")


def _read_artifact(artifact_id: str) -> bytes:
    from optuna.artifacts import FileSystemArtifactStore
    from optuna.artifacts.exceptions import ArtifactNotFound

    base = state.artifacts_dir()
    try:
        with FileSystemArtifactStore(base).open_reader(artifact_id) as f:
            return f.read()
    except (ArtifactNotFound, OSError) as e:
        raise ArtifactError(f"artifact {artifact_id} not found in {base}: {e}") from None


_VERSION_TABLE = {  # column: config; the order of the table
    "version": st.column_config.NumberColumn(pinned=True),
    "promoted": st.column_config.CheckboxColumn(help="used by workers: a refit is promoted only when it beat "
                                                     "its parent on the held-out architectures (see the note)"),
    "warm_trials": st.column_config.NumberColumn(
        "warm trials", help="completed or pruned trials of this study warm-started from the version"),
    "gain": st.column_config.NumberColumn(
        "gain (final)", format="%+.4f",
        help="median final val loss of the random-init controls minus that of this version's warm trials "
             "(> 0: the warm starts ended lower)"),
    "step0_gain": st.column_config.NumberColumn(
        "gain (step 0)", format="%+.4f", help="the same for the mean val loss before training"),
    "refit_seconds": st.column_config.NumberColumn(
        "refit / set-up (s)", format="%.1f",
        help="wall time of the refit that made the version (version 0: setting up the initial hypernet)"),
    "created_at": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "trials_used": st.column_config.NumberColumn("trials used", help="finished trials the refit learned from"),
    "val_loss": st.column_config.NumberColumn("held-out val loss", format="%.4f"),
    "parent_val_loss": st.column_config.NumberColumn(
        "parent's val loss", format="%.4f", help="the parent version on the same held-out set"),
    "warm_final": st.column_config.NumberColumn("warm median final", format="%.4f"),
    "control_final": st.column_config.NumberColumn("control median final", format="%.4f"),
    "warm_step0": st.column_config.NumberColumn("warm mean step 0", format="%.4f"),
    "control_step0": st.column_config.NumberColumn("control mean step 0", format="%.4f"),
    "device": st.column_config.TextColumn(),
    "note": st.column_config.TextColumn("origin / promotion note", width="large",
                                        help="where the version came from and why it was (not) promoted; "
                                             "in full below the table"),
    "artifact_id": st.column_config.TextColumn("checkpoint artifact"),
}
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>#|~$"})  # a note is text, not markdown


def versions(v: StudyView) -> None:
    """Hypernet versions: timeline, warm-vs-control gain per version (does the closed loop help as the
    study goes on?), and the table with refit cost and promotion notes (nas.versions, nas.gain)."""
    try:
        versions = state.versions(v.reader.url, v.name)
        gains = state.version_gains(v.reader.url, v.name, state.trials_key(v.reader, v.name))
    except StorageError as e:
        st.error(str(e))
        versions = None
    if versions is not None and versions.empty:
        st.info("No hypernet versions recorded for this study (the `logah_hypernet_versions` table has none).")
    elif versions is not None:
        st.plotly_chart(charts.versions(versions), key="versions")
        st.plotly_chart(charts.version_gain(gains), key="version_gain")
        st.caption(analysis.gain_trend(gains))
        table = versions.rename(columns={"seconds": "refit_seconds"}).merge(
            gains[["version", "warm_trials", "gain", "step0_gain", "warm_final", "control_final", "warm_step0",
                   "control_step0"]], on="version", how="left")
        table["warm_trials"] = table["warm_trials"].fillna(0).astype(int)
        st.dataframe(table[list(_VERSION_TABLE)], hide_index=True, column_config=_VERSION_TABLE)
        summary = analysis.refit_summary(versions, float(v.trials_df["duration_s"].sum()))
        st.caption(f"{len(table)} version{'s' if len(table) != 1 else ''}: {summary} "
                   "Gains compare each version's warm trials with the random-init controls of its period (trial "
                   "numbers from its first to its last warm trial); None: no finished warm trial started from the "
                   "version, or no control ran in its period.")
        with st.expander("Where each version came from and why it was (not) promoted", expanded=len(table) <= 8):
            st.markdown("\n".join(
                f"- **v{row.version}** ({'promoted' if row.promoted else 'not promoted'}, "
                f"{row.refit_seconds:.1f} s): {str(row.note or '—').translate(_MARKDOWN_SPECIAL)}"
                for row in table.itertuples(index=False)))
    screening = describe_screening(v.study.user_attrs)
    if screening:
        st.caption(screening[0].upper() + screening[1:] + ".")


def best_model(v: StudyView) -> None:
    """Best (and best warm-started) trial with a .zip export of its weights."""
    best_warm = analysis.best_trial(v.study, warm_only=True)
    if v.best is None:
        st.info("No completed trial yet: nothing to export.")
    seen = set()
    for label, t in zip(("Best trial", "Best warm-started trial"), (v.best, best_warm)):
        if t is None or t.number in seen:
            continue
        seen.add(t.number)
        st.subheader(f"{label}: #{t.number}")
        a = t.user_attrs
        k = st.columns(4)
        k[0].metric("Val loss", f"{t.values[0]:.4f}")
        k[1].metric("Init", {"warm": "hypernet", "random": "random", "unknown": "—"}[frames.init_of(a)])
        k[2].metric("Hypernet version", "—" if a.get(HYPERNET_VERSION) is None else a[HYPERNET_VERSION])
        k[1].metric("Init", a.get(INIT) or {"warm": "hypernet", "random": "random", "unknown": "—"}[frames.init_of(a)])
        k[3].metric("Parameters", f"{a[N_PARAMS]:,}" if isinstance(a.get(N_PARAMS), int) else "—")
        test = (v.study.user_attrs.get(STUDY_TEST_METRICS) or {}).get(str(t.number))
        if isinstance(test, dict) and "loss" in test:
            k = st.columns(4)
            k[0].metric("Test loss", f"{test['loss']:.4f}")
            if "accuracy" in test:
                k[1].metric("Test accuracy", f"{test['accuracy']:.2%}")
            if "perplexity" in test:
                k[1].metric("Test perplexity", f"{test['perplexity']:.2f}")
            k[2].metric("Test examples", f"{test.get('examples', 0):,}")
            st.caption("Test split: never used to select a trial; computed when `logah-nas search` / `export` "
                       "exported this trial.")
        elif t.number == (best_warm.number if best_warm is not None else None):
            st.caption("No test metrics yet: `logah-nas export` computes them on the test split.")
        if a.get(CONFIG):
            with st.expander("Config"):
                st.json(a[CONFIG])
        artifact_id = a.get(WEIGHTS)
        if not artifact_id:
            st.info(f"This trial has no stored weights (`{WEIGHTS}` attr), so it cannot be exported here.")
            continue
        if st.button("Build export (.zip)", key=f"build_{t.number}", icon=":material/package_2:"):
            st.session_state[f"export_{v.name}_{t.number}"] = True
        if st.session_state.get(f"export_{v.name}_{t.number}"):
            try:
                blob = state.export_zip(v.reader.url, v.name, t.number, artifact_id, state.artifacts_dir())
            except ArtifactError as e:
                st.error(f"Cannot export trial {t.number}: {e}")
            else:
                st.download_button("Download model (.zip)", blob, key=f"download_{t.number}",
                                   file_name=f"{export.export_name(v.name, t.number)}.zip",
                                   mime="application/zip", type="primary", icon=":material/download:")
                st.caption(f"{len(blob) / 1e6:.1f} MB · model.safetensors, config.json, provenance.json, model card "
                           "(README.md); ViT: preprocessor_config.json; GPT-2: tokenizer")
