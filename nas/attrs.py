"""The names of the trial and study user attrs: the contract between the objective that writes
them and the dashboard, export, refit and benchmarks that read them.

Import-light on purpose (no torch, no optuna): the dashboard imports it. ARCHITECTURE.md's table
of trial attrs is checked against `TRIAL_ATTRS` by a test, so the two cannot drift.
"""
from __future__ import annotations

# ---- trial user attrs --------------------------------------------------------------------------
WARM_START = "warm_start"
HYPERNET_VERSION = "hypernet_version"
WARM_STRENGTH = "warm_strength"
PREDICT_SECONDS = "predict_seconds"
LOSS_STEP0 = "loss_step0"
N_PARAMS = "n_params"
CONFIG = "config"
WEIGHTS = "weights_artifact_id"
TRAIN_SECONDS = "train_seconds"
VAL_ACCURACY = "val_accuracy"
VAL_PERPLEXITY = "val_perplexity"
FAIL_REASON = "fail_reason"
SCREEN_LOSS = "screen_loss"
INIT = "init"
INIT_SOURCE = "init_source"
SAFETY = "safety"

# key -> (type, meaning): what the dashboard documents and ARCHITECTURE.md lists.
TRIAL_ATTRS: dict[str, tuple[str, str]] = {
    WARM_START: ("bool", "True: params from hypernet; False: random-init control trial"),
    HYPERNET_VERSION: ("int or None", "version used (None for control trials)"),
    WARM_STRENGTH: ("float", "only on warm trials: the share of the prediction applied (`hypernet.warm_strength`)"),
    PREDICT_SECONDS: ("float", "time to predict + load params"),
    LOSS_STEP0: ("float", "val loss before training (also reported as intermediate value at step 0)"),
    N_PARAMS: ("int", "model parameters"),
    CONFIG: ("dict", "`config.to_dict()`"),
    WEIGHTS: ("str", "Optuna artifact id of the final weights (safetensors)"),
    TRAIN_SECONDS: ("float", "wall time of training (0 when stopped before it started)"),
    VAL_ACCURACY: ("float", "images only: val accuracy at the end"),
    VAL_PERPLEXITY: ("float", "text only: exp(val loss) at the end"),
    FAIL_REASON: ("str", "set on FAIL/PRUNED trials: why"),
    SCREEN_LOSS: ("float", "only on hypernet-screened startup trials: the predicted val loss that chose the architecture"),
    INIT: ("str", "the init strategy (`nas.init_strategies`): hypernet, random, pytorch, mimetic or inherit"),
    INIT_SOURCE: ("int or None", "only with `inherit`: the trial whose trained weights were selected (None: none yet)"),
    SAFETY: ("dict", "only on warm trials with `study.safety_batches` > 0 (`nas.safety`): outcome (kept, blended or "
                     "replaced), init_loss, predicted_loss, loss (of the start trained from; None: not finite), "
                     "strength (of that start; 0: the init)"),
}

# ---- study user attrs --------------------------------------------------------------------------
STUDY_SPACE = "space"
STUDY_DATA = "data"
STUDY_METRIC = "metric"
STUDY_CONFIG = "config"
STUDY_PACKAGE_VERSION = "logah_nas_version"
STUDY_SCREENED = "screened"
STUDY_UID = "study_uid"
STUDY_TEST_METRICS = "test_metrics"

STUDY_ATTRS: dict[str, tuple[str, str]] = {
    STUDY_SPACE: ("str", "search space name"),
    STUDY_DATA: ("str", "data set name"),
    STUDY_METRIC: ("str", "the minimised metric (`val_loss`)"),
    STUDY_CONFIG: ("dict", "what defines the study: space, data, seed, the hypernet/study keys that differ from "
                           "their defaults, n_trials, artifacts_dir; passwords masked (`nas.study.expand_config` "
                           "rebuilds what workers run)"),
    STUDY_PACKAGE_VERSION: ("str", "logah-nas version that created the study"),
    STUDY_SCREENED: ("dict", "what screening enqueued when the study was created: candidates, enqueued, seconds, losses"),
    STUDY_TEST_METRICS: ("dict", "written by `logah-nas search` / `export`: trial number -> the exported model's test "
                                 "metrics (split, data, loss, accuracy or perplexity, examples), computed at export"),
    STUDY_UID: ("str", "uuid set at creation: the study's identity in `logah_hypernet_versions` (a deleted "
                       "study's versions never reach a new study of the same name)"),
}

__all__ = [
    "CONFIG", "FAIL_REASON", "HYPERNET_VERSION", "INIT", "INIT_SOURCE", "LOSS_STEP0", "N_PARAMS", "PREDICT_SECONDS", "SAFETY",
    "SCREEN_LOSS",
    "STUDY_ATTRS", "STUDY_CONFIG", "STUDY_DATA", "STUDY_METRIC", "STUDY_PACKAGE_VERSION", "STUDY_SCREENED",
    "STUDY_SPACE", "STUDY_TEST_METRICS", "STUDY_UID", "TRAIN_SECONDS", "TRIAL_ATTRS", "VAL_ACCURACY", "VAL_PERPLEXITY", "WARM_START",
    "WARM_STRENGTH", "WEIGHTS",
]
