"""What the study page concludes from the frames: warm start vs random init, parameter
importances, the best trial. No Streamlit; pure functions of frames and Optuna studies.
"""
from __future__ import annotations

import math

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from app.reader import short_error
from nas.attrs import WARM_START


# ----------------------------------------------------------------------------------------------
# Warm start vs random init
# ----------------------------------------------------------------------------------------------

def default_target(trials_df: pd.DataFrame) -> float | None:
    """Median final val loss of random-init trials (what the control reaches); else of all trials."""
    done = trials_df[(trials_df["state"] == "COMPLETE") & trials_df["value"].notna()]
    random_done = done[done["init"] == "random"]
    pool = random_done if len(random_done) else done
    return float(pool["value"].median()) if len(pool) else None


def curve_stats(curves_df: pd.DataFrame, target: float | None) -> pd.DataFrame:
    """Per trial: `auc` (trapezoid area under val loss / step span = mean loss over training),
    `last_step` and `step_to_target` (first eval step with val loss <= target; NaN if never)."""
    c = curves_df.sort_values(["number", "step"])
    g = c.groupby("number", sort=False)
    area = ((c["step"] - g["step"].shift()) * (c["value"] + g["value"].shift()) / 2).groupby(c["number"]).sum()
    first, last = g["step"].min(), g["step"].max()
    span = (last - first).astype(float)
    auc = (area / span.where(span > 0)).fillna(g["value"].first())
    hit = c[c["value"] <= target].groupby("number")["step"].min() if target is not None else pd.Series(dtype=float)
    return pd.DataFrame({"auc": auc, "last_step": last.astype(float), "step_to_target": hit.reindex(auc.index)})


GAIN_ROWS = ["trials", "complete", "loss at step 0 (mean)", "final val loss (mean)", "best val loss",
             "val-loss AUC (mean loss over training)", "reached target", "steps to target (median)",
             "seconds to target (median)"]


def warm_start_gain(trials_df: pd.DataFrame, curves_df: pd.DataFrame, target: float | None = None) -> pd.DataFrame:
    """Warm-started vs random-init trials, one column each, plus `gain` (random minus warm, or
    random/warm for steps and seconds to the target). Curves of completed trials only, so
    pruned runs do not bias the area under the curve."""
    complete = set(trials_df.loc[trials_df["state"] == "COMPLETE", "number"])
    stats = curve_stats(curves_df[curves_df["number"].isin(complete)], target)
    out = {}
    for init in ("warm", "random"):
        rows = trials_df[trials_df["init"] == init]
        done = rows[rows["state"] == "COMPLETE"]
        s = stats.reindex(done["number"])
        train = done.set_index("number")["train_seconds"]
        predict = done.set_index("number")["predict_seconds"].fillna(0.0)
        seconds = predict + train * s["step_to_target"] / s["last_step"]
        reached = s["step_to_target"].notna()
        out[init] = [len(rows), len(done), rows["loss_step0"].mean(), done["value"].mean(), done["value"].min(),
                     s["auc"].mean(), reached.mean() if len(s) else math.nan,
                     s["step_to_target"].median(), seconds.median()]
    w, r = out["warm"], out["random"]
    ratio = lambda a, b: b / a if a and not math.isnan(a) and not math.isnan(b) else math.nan  # noqa: E731
    out["gain"] = [math.nan, math.nan, r[2] - w[2], r[3] - w[3], r[4] - w[4], r[5] - w[5], w[6] - r[6],
                   ratio(w[7], r[7]), ratio(w[8], r[8])]
    return pd.DataFrame(out, index=GAIN_ROWS)


def mean_curves(curves_df: pd.DataFrame) -> pd.DataFrame:
    """Mean and quartiles of val loss per (init, step): the band plotted for each group."""
    if curves_df.empty:
        return pd.DataFrame(columns=["init", "step", "mean", "q25", "q75", "n"])
    g = curves_df.groupby(["init", "step"], observed=True)["value"]
    out = pd.DataFrame({"mean": g.mean(), "q25": g.quantile(0.25), "q75": g.quantile(0.75), "n": g.size()})
    return out.reset_index()


# ----------------------------------------------------------------------------------------------
# Importances, best trial
# ----------------------------------------------------------------------------------------------

MIN_TRIALS_FOR_IMPORTANCE = 5


def importances(study: optuna.Study, seed: int = 0) -> tuple[dict[str, float], str | None]:
    """fANOVA importances with a fixed seed, or ({}, why not) when there is too little to go on."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(study.directions) > 1:
        return {}, "parameter importances are shown for single-objective studies only"
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, (f"parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} completed trials "
                    f"(this study has {len(complete)})")
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        result = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as e:
        return {}, f"parameter importances unavailable: {short_error(e)}"
    if not result:
        return {}, "no parameter varies across all completed trials"
    return {k: float(v) for k, v in result.items()}, None


def best_trial(study: optuna.Study, warm_only: bool = False) -> FrozenTrial | None:
    """Best completed trial (optionally among warm-started ones); None when there is none."""
    if len(study.directions) > 1:
        return None
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    if warm_only:
        done = [t for t in done if t.user_attrs.get(WARM_START) is True]
    if not done:
        return None
    pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
    return pick(done, key=lambda t: t.values[0])
