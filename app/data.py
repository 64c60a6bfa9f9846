"""Read-only access to a study storage, as pandas DataFrames for the dashboard.

No Streamlit in here: the app caches what these functions return, and tests call them directly.
The dashboard must never change a study, so the database is opened read-only *by the driver*
(SQLite `mode=ro`, PostgreSQL/MySQL read-only sessions): a bug cannot turn into a write.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
import pandas as pd
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from nas.screen import SCORE_ATTR
from nas.secrets import mask_url

ENV_STORAGE = "LOGAH_STORAGE"
ENV_ARTIFACTS = "LOGAH_ARTIFACTS"
DEFAULT_ARTIFACTS = "logah_runs/artifacts"
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
INITS = ("warm", "random", "unknown")  # from the `warm_start` trial attr; "unknown": study predates it
_ARTIFACT_ATTR_PREFIX = "artifacts:"  # how Optuna records uploaded artifacts in trial system attrs
_CONNECT_TIMEOUT_S = 5  # an unreachable server must not hang the page


class StorageError(RuntimeError):
    """The storage cannot be read; the message names it with credentials masked."""


class ArtifactError(RuntimeError):
    """A trial's weights artifact is missing, unreadable or does not fit the trial's config."""


# ----------------------------------------------------------------------------------------------
# Opening the storage read-only
# ----------------------------------------------------------------------------------------------

def readonly_url(url: str) -> tuple[str, dict[str, Any]]:
    """(URL, engine kwargs) that open `url` so the database driver refuses every write."""
    try:
        parsed = sa.engine.make_url(url)
    except Exception as e:  # noqa: BLE001 - any parse failure is a user input error
        raise StorageError(f"{mask_url(url)!r} is not a database URL ({e})") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database or ""
        if db in ("", ":memory:") or "mode=memory" in db:
            raise StorageError(f"{mask_url(url)} is an in-memory database: nothing to show")
        path = Path(db.removeprefix("file:").split("?", 1)[0]).expanduser().resolve()
        if not path.is_file():
            raise StorageError(f"no study database at {path} (storage {mask_url(url)})")
        query = {"mode": "ro", "uri": "true"}
        if not os.access(path.parent, os.W_OK):
            # WAL files need a writable folder even for readers; a read-only snapshot is safe to
            # open as immutable (no locking, no -shm file).
            query = {"immutable": "1", "uri": "true"}
        params = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{parsed.drivername}:///file:{quote(str(path))}?{params}", {}
    if backend == "postgresql":
        return url, {"connect_args": {"options": "-c default_transaction_read_only=on",
                                      "connect_timeout": _CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    if backend in ("mysql", "mariadb"):
        return url, {"connect_args": {"init_command": "SET SESSION TRANSACTION READ ONLY",
                                      "connect_timeout": _CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    raise StorageError(f"cannot open {backend} storage {mask_url(url)} read-only; "
                       "supported: sqlite, postgresql, mysql")


class Reader:
    """One read-only storage: its studies and their trials.

    Study objects are kept, because Optuna's RDB storage cache then reads only new or
    unfinished trials on each refresh instead of all 5,000 again.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.masked_url = mask_url(url)
        ro_url, engine_kwargs = readonly_url(url)
        try:
            probe = sa.create_engine(ro_url, **engine_kwargs)
            try:
                has_tables = sa.inspect(probe).has_table("studies")
            finally:
                probe.dispose()
            # Without Optuna's tables there is nothing to read; RDBStorage would try to create them.
            self.storage = (optuna.storages.RDBStorage(ro_url, engine_kwargs=engine_kwargs, skip_table_creation=True)
                            if has_tables else None)
        except StorageError:
            raise
        except Exception as e:  # noqa: BLE001 - driver errors vary; the user needs the gist
            raise StorageError(f"cannot read study storage {self.masked_url}: {short_error(e)}") from None
        self._studies: dict[str, optuna.Study] = {}
        self._lock = threading.Lock()

    @property
    def engine(self) -> sa.engine.Engine | None:
        return None if self.storage is None else self.storage.engine

    def study_names(self) -> list[str]:
        if self.storage is None:
            return []
        return sorted(s.study_name for s in self.storage.get_all_studies())

    def study(self, name: str) -> optuna.Study:
        with self._lock:
            if name not in self._studies:
                if self.storage is None:
                    raise StorageError(f"no studies in {self.masked_url}")
                try:
                    self._studies[name] = optuna.load_study(study_name=name, storage=self.storage)
                except KeyError:
                    raise StorageError(f"no study named {name!r} in {self.masked_url}") from None
            return self._studies[name]

    def trials(self, name: str) -> list[FrozenTrial]:
        """All trials, shared (not copied): callers must not modify them."""
        return self.study(name).get_trials(deepcopy=False)

    def trial(self, name: str, number: int) -> FrozenTrial:
        trials = self.trials(name)  # sorted by number, and numbers are 0..n-1 within a study
        if 0 <= number < len(trials) and trials[number].number == number:
            return trials[number]
        for t in trials:
            if t.number == number:
                return t
        raise KeyError(f"study {name!r} has no trial {number}")

    def versions(self, name: str) -> pd.DataFrame:
        return versions_frame(self.engine, name)

    def studies(self) -> pd.DataFrame:
        rows = [study_row(self.study(name)) for name in self.study_names()]
        return pd.DataFrame(rows, columns=STUDY_COLUMNS)

    def close(self) -> None:
        if self.storage is not None:
            self.storage.engine.dispose()


def short_error(e: BaseException, limit: int = 300) -> str:
    """First line of an error, credentials masked, cut to `limit` characters: for st.error."""
    text = mask_url(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return text if len(text) <= limit else text[:limit] + "…"


def trials_key(trials: Sequence[FrozenTrial]) -> tuple:
    """Changes whenever a trial is added, finishes or reports: the cache key of the frames."""
    last = max((t.datetime_complete or t.datetime_start or dt.datetime.min for t in trials), default=None)
    running = sum(len(t.intermediate_values) for t in trials if not t.state.is_finished())
    return len(trials), last, running


# ----------------------------------------------------------------------------------------------
# Frames
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
    warm = [t.user_attrs["warm_start"] for t in trials if isinstance(t.user_attrs.get("warm_start"), bool)]
    times = [d for t in trials for d in (t.datetime_start, t.datetime_complete) if d is not None]
    return {
        "study": study.study_name, "space": attrs.get("space"), "data": attrs.get("data"),
        "direction": ", ".join(d.name.lower() for d in study.directions), "trials": len(trials),
        **{s.lower(): counts[s] for s in STATES}, "best_value": best,
        "warm_share": (sum(warm) / len(warm)) if warm else None,
        "last_activity": max(times) if times else None,
    }


TRIAL_COLUMNS = ["number", "state", "value", "init", "hypernet_version", "loss_step0", "screen_loss", "n_params",
                 "train_seconds", "predict_seconds", "val_accuracy", "val_perplexity", "duration_s",
                 "datetime_start", "datetime_complete", "has_weights", "fail_reason"]


def init_of(attrs: dict[str, Any]) -> str:
    """"warm", "random" or "unknown" (no `warm_start` attr) for a trial's user attrs."""
    warm = attrs.get("warm_start")
    return "unknown" if not isinstance(warm, bool) else "warm" if warm else "random"


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def trials_frame(trials: Iterable[FrozenTrial]) -> pd.DataFrame:
    """One row per trial: state, objective, our user attrs (NaN/None when absent) and `param_*` columns."""
    rows = []
    for t in trials:
        a = t.user_attrs
        start, end = t.datetime_start, t.datetime_complete
        row = {
            "number": t.number, "state": t.state.name, "value": t.values[0] if t.values else math.nan,
            "init": init_of(a), "hypernet_version": _num(a.get("hypernet_version")),
            "loss_step0": _num(a.get("loss_step0", t.intermediate_values.get(0))),
            "screen_loss": _num(a.get(SCORE_ATTR)),  # hypernet-screened startup architecture
            "n_params": _num(a.get("n_params")), "train_seconds": _num(a.get("train_seconds")),
            "predict_seconds": _num(a.get("predict_seconds")), "val_accuracy": _num(a.get("val_accuracy")),
            "val_perplexity": _num(a.get("val_perplexity")),
            "duration_s": (end - start).total_seconds() if start and end else math.nan,
            "datetime_start": start, "datetime_complete": end,
            "has_weights": bool(a.get("weights_artifact_id")), "fail_reason": a.get("fail_reason"),
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
# Importances, versions, trial details
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


VERSION_COLUMNS = ["version", "created_at", "trials_used", "val_loss", "parent_val_loss", "promoted", "device",
                   "seconds", "artifact_id", "sha256", "note"]


def versions_frame(engine: sa.engine.Engine | None, study_name: str) -> pd.DataFrame:
    """The study's hypernet versions (nas.versions), oldest first; empty when none were recorded."""
    if engine is None:
        return pd.DataFrame(columns=VERSION_COLUMNS)
    from dataclasses import asdict

    from nas.versions import list_versions

    try:
        rows = [asdict(v) for v in list_versions(engine, study_name)]
    except sa.exc.SQLAlchemyError as e:
        raise StorageError(f"cannot read hypernet versions: {short_error(e)}") from None
    return pd.DataFrame(rows, columns=VERSION_COLUMNS)


def artifacts(trial: FrozenTrial) -> pd.DataFrame:
    """Artifacts Optuna recorded for the trial (id, filename, mimetype)."""
    rows = []
    for key, raw in trial.system_attrs.items():
        if not key.startswith(_ARTIFACT_ATTR_PREFIX):
            continue
        try:
            meta = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except (TypeError, ValueError):
            continue
        rows.append({"artifact_id": meta.get("artifact_id"), "filename": meta.get("filename"),
                     "mimetype": meta.get("mimetype")})
    return pd.DataFrame(rows, columns=["artifact_id", "filename", "mimetype"])


_DETAIL_SKIP = {"config"}


def trial_detail(trial: FrozenTrial) -> dict[str, Any]:
    """What the detail panel shows, in JSON-friendly form."""
    a = trial.user_attrs
    return {
        "number": trial.number, "state": trial.state.name,
        "value": trial.values[0] if trial.values else None, "init": init_of(a),
        "n_params": a.get("n_params"), "fail_reason": a.get("fail_reason"),
        "config": a.get("config"), "params": dict(trial.params),
        "user_attrs": {k: v for k, v in a.items() if k not in _DETAIL_SKIP},
        "datetime_start": trial.datetime_start, "datetime_complete": trial.datetime_complete,
        "weights_artifact_id": a.get("weights_artifact_id"),
    }


def best_trial(study: optuna.Study, warm_only: bool = False) -> FrozenTrial | None:
    """Best completed trial (optionally among warm-started ones); None when there is none."""
    if len(study.directions) > 1:
        return None
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
    if warm_only:
        done = [t for t in done if t.user_attrs.get("warm_start") is True]
    if not done:
        return None
    pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
    return pick(done, key=lambda t: t.values[0])
