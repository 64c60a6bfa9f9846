"""Trials and studies as pandas DataFrames (and a trial as the detail panel's dict).

Pure functions of Optuna objects already read (`app.reader` reads them): no database, no
Streamlit. Frame columns are the dashboard's own schema (`TRIAL_COLUMNS`, ...); the trial and
study user attrs they are built from are named by `nas.attrs`.
"""
from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from nas.attrs import (CONFIG, FAIL_REASON, HYPERNET_VERSION, LOSS_STEP0, N_PARAMS, PREDICT_SECONDS, SCREEN_LOSS,
                       STUDY_DATA, STUDY_SPACE, TRAIN_SECONDS, VAL_ACCURACY, VAL_PERPLEXITY, WARM_START, WEIGHTS)
from nas.safety import outcome_of

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
INITS = ("warm", "random", "unknown")  # from the `warm_start` trial attr; "unknown": study predates it
_ARTIFACT_ATTR_PREFIX = "artifacts:"  # how Optuna records uploaded artifacts in trial system attrs


def trials_key(trials: Sequence[FrozenTrial]) -> tuple:
    """Changes whenever a trial is added, finishes or reports: the cache key of the frames."""
    last = max((t.datetime_complete or t.datetime_start or dt.datetime.min for t in trials), default=None)
    running = sum(len(t.intermediate_values) for t in trials if not t.state.is_finished())
    return len(trials), last, running


def init_of(attrs: dict[str, Any]) -> str:
    """"warm", "random" or "unknown" (no `warm_start` attr) for a trial's user attrs."""
    warm = attrs.get(WARM_START)
    return "unknown" if not isinstance(warm, bool) else "warm" if warm else "random"


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


# ----------------------------------------------------------------------------------------------
# Studies
# ----------------------------------------------------------------------------------------------

STUDY_COLUMNS = ["study", "space", "data", "direction", "trials", *[s.lower() for s in STATES],
                 "best_value", "warm_share", "last_activity"]


def study_row(study: optuna.Study) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    counts = {s: 0 for s in STATES}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    attrs = study.user_attrs
    finished = [t for t in trials if t.state is TrialState.COMPLETE and t.values]
    best = None
    if finished:
        pick = min if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else max
        best = pick(t.values[0] for t in finished)
    warm = [t.user_attrs[WARM_START] for t in trials if isinstance(t.user_attrs.get(WARM_START), bool)]
    times = [d for t in trials for d in (t.datetime_start, t.datetime_complete) if d is not None]
    return {
        "study": study.study_name, "space": attrs.get(STUDY_SPACE), "data": attrs.get(STUDY_DATA),
        "direction": ", ".join(d.name.lower() for d in study.directions), "trials": len(trials),
        **{s.lower(): counts[s] for s in STATES}, "best_value": best,
        "warm_share": (sum(warm) / len(warm)) if warm else None,
        "last_activity": max(times) if times else None,
    }


# ----------------------------------------------------------------------------------------------
# Trials
# ----------------------------------------------------------------------------------------------

TRIAL_COLUMNS = ["number", "state", "value", "init", "hypernet_version", "loss_step0", "screen_loss", "safety",
                 "n_params", "train_seconds", "predict_seconds", "val_accuracy", "val_perplexity", "duration_s",
                 "datetime_start", "datetime_complete", "has_weights", "fail_reason"]


def trials_frame(trials: Iterable[FrozenTrial]) -> pd.DataFrame:
    """One row per trial: state, objective, our user attrs (NaN/None when absent) and `param_*` columns."""
    rows = []
    for t in trials:
        a = t.user_attrs
        start, end = t.datetime_start, t.datetime_complete
        row = {
            "number": t.number, "state": t.state.name, "value": t.values[0] if t.values else math.nan,
            "init": init_of(a), "hypernet_version": _num(a.get(HYPERNET_VERSION)),
            "loss_step0": _num(a.get(LOSS_STEP0, t.intermediate_values.get(0))),
            "screen_loss": _num(a.get(SCREEN_LOSS)),  # hypernet-screened startup architecture
            "safety": outcome_of(a),  # kept / blended / replaced by the safety net; None: not checked
            "n_params": _num(a.get(N_PARAMS)), "train_seconds": _num(a.get(TRAIN_SECONDS)),
            "predict_seconds": _num(a.get(PREDICT_SECONDS)), "val_accuracy": _num(a.get(VAL_ACCURACY)),
            "val_perplexity": _num(a.get(VAL_PERPLEXITY)),
            "duration_s": (end - start).total_seconds() if start and end else math.nan,
            "datetime_start": start, "datetime_complete": end,
            "has_weights": bool(a.get(WEIGHTS)), "fail_reason": a.get(FAIL_REASON),
        }
        row.update({f"param_{k}": v for k, v in t.params.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    param_cols = sorted(c for c in df.columns if c.startswith("param_"))
    df = df[TRIAL_COLUMNS + param_cols]
    df["state"] = pd.Categorical(df["state"], categories=STATES)
    df["init"] = pd.Categorical(df["init"], categories=INITS)
    return df.sort_values("number", ignore_index=True)


def curves_frame(trials: Iterable[FrozenTrial]) -> pd.DataFrame:
    """Long frame of intermediate values (val loss per eval step): number, init, state, step, value."""
    numbers, inits, states, steps, values = [], [], [], [], []
    for t in trials:
        if not t.intermediate_values:
            continue
        init = init_of(t.user_attrs)
        for step, value in sorted(t.intermediate_values.items()):
            numbers.append(t.number), inits.append(init), states.append(t.state.name)
            steps.append(step), values.append(value)
    df = pd.DataFrame({"number": numbers, "init": pd.Categorical(inits, categories=INITS),
                       "state": pd.Categorical(states, categories=STATES), "step": steps, "value": values})
    df["step"] = df["step"].astype("int64")
    df["value"] = df["value"].astype("float64")
    return df


def filter_trials(df: pd.DataFrame, states: Iterable[str] | None = None, inits: Iterable[str] | None = None,
                  value_range: tuple[float, float] | None = None) -> pd.DataFrame:
    """Rows matching every given filter; a value range drops trials without a value."""
    mask = pd.Series(True, index=df.index)
    if states is not None:
        mask &= df["state"].isin(list(states))
    if inits is not None:
        mask &= df["init"].isin(list(inits))
    if value_range is not None:
        lo, hi = value_range
        mask &= df["value"].between(lo, hi)
    return df[mask]


def page(df: pd.DataFrame, number: int, size: int) -> tuple[pd.DataFrame, int]:
    """Page `number` (1-based, clamped to the valid range) of `size` rows, and the page count."""
    if size < 1:
        raise ValueError(f"page size must be >= 1, got {size}")
    pages = max(1, math.ceil(len(df) / size))
    number = min(max(1, int(number)), pages)
    return df.iloc[(number - 1) * size: number * size], pages


# ----------------------------------------------------------------------------------------------
# One trial
# ----------------------------------------------------------------------------------------------

def artifacts(trial: FrozenTrial) -> pd.DataFrame:
    """Artifacts Optuna recorded for the trial (filename, id, mimetype). The store keeps only the
    artifact id; the original file name lives in this record, so the dashboard shows and serves it."""
    rows = []
    for key, raw in trial.system_attrs.items():
        if not key.startswith(_ARTIFACT_ATTR_PREFIX):
            continue
        try:
            meta = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except (TypeError, ValueError):
            continue
        rows.append({"filename": meta.get("filename"), "artifact_id": meta.get("artifact_id"),
                     "mimetype": meta.get("mimetype")})
    return pd.DataFrame(rows, columns=["filename", "artifact_id", "mimetype"])


_DETAIL_SKIP = {CONFIG}  # shown on its own


def trial_detail(trial: FrozenTrial) -> dict[str, Any]:
    """What the detail panel shows, in JSON-friendly form."""
    a = trial.user_attrs
    return {
        "number": trial.number, "state": trial.state.name,
        "value": trial.values[0] if trial.values else None, "init": init_of(a),
        "n_params": a.get(N_PARAMS), "fail_reason": a.get(FAIL_REASON),
        "config": a.get(CONFIG), "params": dict(trial.params),
        "user_attrs": {k: v for k, v in a.items() if k not in _DETAIL_SKIP},
        "datetime_start": trial.datetime_start, "datetime_complete": trial.datetime_complete,
        "weights_artifact_id": a.get(WEIGHTS),
    }
