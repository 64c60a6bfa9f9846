"""What the study page concludes from the frames: warm start vs random init, parameter
importances, the best trial, the warm-vs-control gain per hypernet version (`nas.gain`). No
Streamlit; pure functions of frames and Optuna objects.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from app.reader import short_error
from nas.attrs import WARM_START
from nas.gain import gain_per_version
from nas.versions import HypernetVersion, refit_share


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
# Does the closed loop help? Warm-vs-control gain per hypernet version (nas.gain)
# ----------------------------------------------------------------------------------------------

GAIN_COLUMNS = ["version", "promoted", "refit_seconds", "note", "warm_trials", "warm_final", "control_final",
                "gain", "warm_step0", "control_step0", "step0_gain"]


def version_gains(trials: Iterable[FrozenTrial], versions: Sequence[HypernetVersion]) -> pd.DataFrame:
    """`nas.gain.gain_per_version` as a frame, one row per version (oldest first), with its `gain`
    (control minus warm median final val loss) and `step0_gain` (the same for mean step-0 loss)."""
    rows = [{**asdict(r), "gain": r.gain, "step0_gain": r.step0_gain} for r in gain_per_version(trials, versions)]
    return pd.DataFrame(rows, columns=GAIN_COLUMNS)


def _versions_list(versions: Iterable[int]) -> str:
    return ", ".join(f"v{v}" for v in versions)


def gain_trend(gains: pd.DataFrame) -> str:
    """In words: how the warm-vs-control gain moved from the first to the last hypernet version that
    finished warm trials started from (the question the closed loop has to answer), and which
    versions no finished warm trial has used."""
    if gains.empty:
        return "No hypernet versions recorded."
    g = gains.sort_values("version")
    if g["control_final"].isna().all() and g["control_step0"].isna().all():
        return ("No random-init control trial has finished yet: there is nothing to measure the warm starts "
                "against.")
    used = g[g["warm_trials"] > 0]
    unused = g[g["warm_trials"] == 0]
    if used.empty:
        return "No warm-started trial has finished yet, so no hypernet version has a gain."
    metric, column = "median final val loss", "gain"
    if used["gain"].isna().all():  # controls or warm trials only pruned so far: step 0 is all there is
        metric, column = "mean step-0 val loss", "step0_gain"
    scored = used[used[column].notna()]

    def at(row) -> str:
        n = int(row["warm_trials"])
        return f"{row[column]:+.3f} (v{int(row['version'])}, {n} warm trial{'s' if n != 1 else ''})"

    first, last = scored.iloc[0], scored.iloc[-1]
    if len(scored) == 1:
        text = f"Gain in {metric}: {at(first)}"
        if int(first["version"]) == int(g["version"].iloc[0]):
            text += "; no refit has been used by a trial yet" if len(g) > 1 else "; no refit yet"
    else:
        delta = round(last[column], 3) - round(first[column], 3)
        verb = "grew" if delta > 0 else "shrank" if delta < 0 else "held steady"
        text = f"Gain in {metric} {verb} from {at(first)} to {at(last)}"
        if column == "gain" and used["step0_gain"].notna().sum() >= 2:
            s = used[used["step0_gain"].notna()]
            text += (f"; step-0 gain from {s['step0_gain'].iloc[0]:+.3f} (v{int(s['version'].iloc[0])}) "
                     f"to {s['step0_gain'].iloc[-1]:+.3f} (v{int(s['version'].iloc[-1])})")
    text += (". Gain = random-init controls of the same period minus warm starts: positive means the warm starts "
             "ended lower.")
    later = unused[unused["version"] > used["version"].max()]
    skipped = unused[unused["version"] < used["version"].max()]
    if len(skipped):
        rejected = not skipped["promoted"].astype(bool).any()
        text += (f" No finished warm trial started from {_versions_list(skipped['version'])}"
                 + (" (not promoted, so workers never use it)." if rejected and len(skipped) == 1 else
                    " (not promoted, so workers never use them)." if rejected else "."))
    if len(later):
        text += f" Not used by a finished warm trial yet: {_versions_list(later['version'])}."
    return text


def refit_summary(versions_df: pd.DataFrame, trial_seconds: float | None = None) -> str:
    """One line: how many refits, how many promoted, the time spent refitting and, given the finished
    trials' seconds, its share of the study's compute (what `hypernet.refit_max_share` caps)."""
    v = versions_df.sort_values("version")
    first = v[v["version"] == 0]
    setup = f"v0 set up in {float(first['seconds'].iloc[0]):.1f} s" if len(first) else None
    refits = v[v["version"] > 0]
    if refits.empty:
        return "No refit yet" + (f" ({setup})." if setup else ".")
    n, promoted = len(refits), int(refits["promoted"].astype(bool).sum())
    refit_s = float(refits["seconds"].sum())
    text = f"{n} refit{'s' if n != 1 else ''}, {promoted} promoted, {refit_s:.1f} s of refitting in all"
    if trial_seconds is not None and refit_s + trial_seconds > 0:
        text += f", {100 * refit_share(refit_s, trial_seconds):.0f} % of refit + trial seconds"
    return text + (f" ({setup})." if setup else ".")


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
