"""`logah-nas {pretrain,search,worker,export,dashboard,predict} key=value ...`

Overrides are Hydra's (`space=gpt2 data=pytext n_trials=32 study.steps=300`); the config tree
lives in nas/conf. Errors in what the user typed end in one line on stderr and exit code 2
(set LOGAH_DEBUG=1 for the traceback).
"""
from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import fields
from typing import Sequence

from nas import attrs
from search_spaces import ConfigError

EXIT_USAGE = 2
EXIT_FAILED = 1
COMMANDS = ("pretrain", "search", "worker", "refitter", "export", "dashboard", "predict")
WORKER_KEYS = {"storage", "study_name", "artifacts_dir", "export_dir", "device", "n_trials"}

USAGE = """\
usage: logah-nas COMMAND [key=value ...]

commands:
  search     create (or resume) a study and run it with `workers` local processes, then export the best trial
  worker     join an existing study (e.g. from another machine: storage=postgresql+psycopg://... study_name=...)
  refitter   refit an existing study's hypernet when due, beside its workers (any machine; device=cuda on a GPU)
  export     export the best trial (or trial=N) to export_dir
  pretrain   meta-train a hypernet for space x data (pretrain.steps, pretrain.out, ...)
  dashboard  open the Streamlit dashboard on 127.0.0.1:`port` for `storage`
  predict    write the shipped hypernet's prediction for a config as a transformers-loadable export
             (space=gpt2 config=gpt2_l | depth=.. width=.. heads=..; out=DIR checkpoint=auto|PATH strength=1.0)

config groups (nas/conf): space={space}  data={data}  hypernet={hypernet}  study={study}
examples:
  logah-nas search
  logah-nas search space=gpt2 data=pytext n_trials=32 workers=2
  logah-nas search study=quick n_trials=4 hypernet.refit_every=2
  logah-nas export trial=3
"""


class UsageError(ValueError):
    """Bad command line (not a config value)."""


def _usage() -> str:
    from nas.config import group_options

    return USAGE.format(**{g: "|".join(group_options(g)) for g in ("space", "data", "hypernet", "study")})


def trials_done_line(done: int, n_trials: int) -> str:
    """The summary's count. Optuna stops each worker after the trial that fills the budget, so with
    several workers one may finish a trial it began just before: said, not hidden."""
    extra = f"; {done - n_trials} more that workers had begun as the budget filled" if done > n_trials else ""
    return f"trials done: {min(done, n_trials)}/{n_trials} (COMPLETE + PRUNED{extra})"


def _print(msg: str = "") -> None:
    print(msg, flush=True)


# ---- commands -----------------------------------------------------------------------------

def cmd_search(overrides: Sequence[str]) -> int:
    from nas.artifacts import export_trial, exported_test_metrics, select_trial
    from nas.config import compose
    from nas.safety import describe_safety, outcome_of
    from nas.screen import describe_screening
    from nas.study import best_trial, export_note, open_session
    from nas.versions import latest_promoted, list_versions
    from nas.storage import check_artifact_store, make_artifact_store, reap_dead_trials
    from nas.study import n_counted
    from nas.workers import (EXIT_INCOMPLETE, REFITTER, log_dir, resume_command, spawn_worker, spawn_workers,
                             stop_workers, supervise)

    cfg = compose(overrides)
    check_artifact_store(make_artifact_store(cfg.artifacts_dir), cfg.artifacts_dir)  # before anything is written
    session = open_session(cfg, create=True)
    study = session.study
    reaped = reap_dead_trials(study)  # trials left RUNNING by workers of an earlier run that died
    if reaped:
        _print(f"failed and re-queued trials {reaped} left RUNNING by dead workers")
    v0 = list_versions(session.storage.engine, cfg.study_name)[0]
    _print(f"study {cfg.study_name!r} in {session.storage.masked_url}: space={cfg.space['name']} data={cfg.data.name} "
           f"n_trials={cfg.n_trials} workers={cfg.workers} hypernet v0: {v0.note}")
    screening = describe_screening(study.user_attrs)
    if screening:
        _print(screening)
    # refits run in a process of their own beside the workers (nas.refitter), never on a trial's path
    refitter = cfg.hypernet.refit_in == "refitter" and cfg.hypernet.refit_every > 0 and n_counted(study) < cfg.n_trials
    helpers = [spawn_worker(cfg, REFITTER)] if refitter else []
    note = _shared_cores_note(cfg.workers, _cores()) if refitter else None
    if note:
        _print(note)
    if cfg.workers == 1:
        try:
            code = _run_in_process(session, helpers)
        finally:
            stop_workers(helpers)
        if code:
            return code
    else:
        workers = spawn_workers(cfg, cfg.workers) + helpers
        try:
            report = supervise(study, cfg, workers, max_restarts=cfg.worker_restarts, engine=session.storage.engine,
                               progress=sys.stderr.isatty(), say=lambda m: print(m, file=sys.stderr, flush=True))
        finally:
            stop_workers(workers)  # the refitter, once the workers are done (a refit in flight is dropped)
        for line in report.describe():
            _print(line)
        _print(f"worker logs: {log_dir(cfg)}")
    reaped = reap_dead_trials(study, settle=True)  # this run's workers are gone: nothing of theirs stays RUNNING
    if reaped:
        _print(f"failed and re-queued trials {reaped} left RUNNING by dead workers")
    done = n_counted(study)
    _print(trials_done_line(done, cfg.n_trials))
    if done < cfg.n_trials:
        print(f"logah-nas: error: study {cfg.study_name!r} is incomplete: {done}/{cfg.n_trials} trials done; "
              f"resume it with: {resume_command('search', list(overrides))}", file=sys.stderr)
        return EXIT_INCOMPLETE
    best = best_trial(study)
    if best is None:
        print("logah-nas: error: no trial completed; see fail_reason of the trials in the dashboard", file=sys.stderr)
        return EXIT_FAILED
    metric = _metric_text(best)
    latest = latest_promoted(session.storage.engine, cfg.study_name)
    versions = list_versions(session.storage.engine, cfg.study_name)
    _print(f"best trial #{best.number}: val_loss={best.value:.4f}{metric} "
           f"warm_start={best.user_attrs.get(attrs.WARM_START)} "
           f"hypernet_version={best.user_attrs.get(attrs.HYPERNET_VERSION)}"
           f" config={_short_config(best.user_attrs.get(attrs.CONFIG, {}))}")
    _print(f"hypernet versions: {len(versions)} (newest promoted: v{latest.version if latest else '-'})")
    _print(_warm_vs_control(study))
    gains = _gain_per_version(study, versions)
    if gains:
        _print(gains)
    safety = describe_safety(outcome_of(t.user_attrs) for t in study.get_trials(deepcopy=False))
    if safety:
        _print(safety)
    chosen = select_trial(study)
    what = (f"best warm-started trial #{chosen.number}" if chosen.user_attrs.get(attrs.WARM_START)
            else f"best trial #{chosen.number}; no warm-started trial completed")
    path = export_trial(session.storage, study, cfg.export_dir, trial_number=chosen.number, dataset=session.dataset)
    _print(f"exported to {path} ({what}; any trial: logah-nas export trial=N)")
    test = exported_test_metrics(path)
    if test:
        _print(f"test split (never used for selection): {_test_text(test)}")
    note = export_note(study, chosen)
    if note:
        _print(note)
    return 0


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _shared_cores_note(workers: int, cores: int) -> str | None:
    """Why trials slow down during refits when the refitter has no core of its own (one-thread
    workers and refitter: bench/RESULTS.md section 5, "A worker's throughput while a refit runs")."""
    if cores < 2 or workers + 1 <= cores:
        return None
    return (f"note: {workers} workers and the refitter share {cores} cores, so trials slow down while a refit runs; "
            f"workers={cores - 1} gives the refitter a core of its own")


def _run_in_process(session, helpers: list) -> int:
    """workers=1: trials in this process; the refitter in `helpers` is restarted when it dies, by
    `supervise`'s policy (`nas.workers.Restarter`: backoff, `worker_restarts`, never after exit 2/4),
    checked after every trial."""
    from tqdm import tqdm

    from nas.study import n_counted, run_trials
    from nas.workers import Restarter, Supervision, exit_text

    report = Supervision(deaths={}, restarts={}, gave_up={}, failed_trials={}, codes={})
    # no backoff: checks come one trial apart
    restarter = Restarter(session.cfg, report, max_restarts=session.cfg.worker_restarts, backoff_s=0.0,
                          say=lambda m: print(m, file=sys.stderr, flush=True))
    bar = tqdm(total=session.cfg.n_trials, desc=session.cfg.study_name, unit="trial",
               disable=not sys.stderr.isatty(), initial=min(n_counted(session.study), session.cfg.n_trials))

    def tick(study, trial) -> None:
        done = min(n_counted(study), session.cfg.n_trials)
        if done > bar.n:
            bar.update(done - bar.n)
        for helper in helpers:
            code = restarter.exited(helper)
            if code:
                print(f"{helper.name} (pid {helper.process.pid}) {exit_text(code)}", file=sys.stderr, flush=True)
                restarter.schedule(helper, code)
        restarter.restart_due(helpers)

    try:
        guard = run_trials(session, callbacks=[tick])
    finally:
        bar.close()
    if guard.tripped:
        print(f"logah-nas: error: {guard.in_a_row} trials failed in a row, last: {guard.last_reason}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _warm_vs_control(study) -> str:
    """One line comparing warm-started and random-init (control) trials of the study."""
    import statistics

    from optuna.trial import TrialState

    parts = []
    for label, warm in (("warm", True), ("control", False)):
        trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(attrs.WARM_START) is warm
                  and t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        done = [t.value for t in trials if t.state == TrialState.COMPLETE]
        step0 = [t.user_attrs[attrs.LOSS_STEP0] for t in trials if attrs.LOSS_STEP0 in t.user_attrs]
        text = f"{label}: {len(done)} complete / {len(trials)}"
        if step0:
            text += f", mean loss@step0 {statistics.fmean(step0):.3f}"
        if done:
            text += f", best {min(done):.4f}, median {statistics.median(done):.4f}"
        parts.append(text)
    return "; ".join(parts)


def _gain_per_version(study, versions) -> str | None:
    """One line: the warm-vs-control gain of each version warm trials used (nas.gain)."""
    from nas.gain import gain_per_version

    # known gains only: nan when a version has no completed warm trial or no control in its period
    used = [g for g in gain_per_version(study.get_trials(deepcopy=False), versions)
            if g.warm_trials and math.isfinite(g.gain)]
    if not used:
        return None
    return "gain over controls (median final val loss) by hypernet version: " + ", ".join(
        f"v{g.version} {g.gain:+.4f} ({g.warm_trials} warm)" for g in used)


def _test_text(test: dict) -> str:
    text = f"test_loss={test['loss']:.4f}"
    if "accuracy" in test:
        text += f" test_accuracy={test['accuracy']:.4f}"
    if "perplexity" in test:
        text += f" test_perplexity={test['perplexity']:.2f}"
    return text + f" ({test.get('examples')} {'images' if 'accuracy' in test else 'tokens'} of {test.get('data')})"


def _metric_text(trial) -> str:
    if attrs.VAL_ACCURACY in trial.user_attrs:
        return f" val_accuracy={trial.user_attrs[attrs.VAL_ACCURACY]:.4f}"
    if attrs.VAL_PERPLEXITY in trial.user_attrs:
        return f" val_perplexity={trial.user_attrs[attrs.VAL_PERPLEXITY]:.2f}"
    return ""


def _short_config(config: dict) -> str:
    keep = ("depth", "width", "heads", "patch_size", "mlp_ratio", "tied_embeddings")
    return ",".join(f"{k}={config[k]}" for k in keep if k in config)


def _worker_overrides(overrides: Sequence[str]) -> dict:
    """`key=value` pairs a worker accepts; everything else comes from the study's stored config."""
    from omegaconf import OmegaConf

    from nas.storage import storage_from_env

    result: dict = {}
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(item, None, "an override of the form key=value")
        top = key.split(".")[0]
        if top not in WORKER_KEYS and top != "data":
            raise ConfigError(key, value, f"one of {sorted(WORKER_KEYS)} or data.options.* (a worker runs the "
                                          "study's own config)")
        if top == "data" and not key.startswith("data.options."):
            raise ConfigError(key, value, "data.options.<name> (a worker cannot change the study's dataset)")
    parsed = OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)), resolve=True)
    result.update(parsed)
    if "storage" not in result:
        result["storage"] = storage_from_env()
    return result


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _join(overrides: Sequence[str]):
    """(config, storage) of a process joining an existing study (worker, refitter): the study's
    stored config with what may differ between machines (`WORKER_KEYS`) overridden."""
    from nas.config import from_dict
    from nas.storage import StudyStorage
    from nas.study import stored_config

    given = _worker_overrides(overrides)
    storage = StudyStorage.open(given.pop("storage"))  # the one connection of this process
    study_name = given.pop("study_name", None)
    if study_name is None:
        names = storage.study_names()
        if len(names) != 1:
            raise ConfigError("study_name", None, f"one of the studies in {storage.masked_url}: {names}")
        study_name = names[0]
    base = stored_config(storage, study_name).to_dict()
    cfg = from_dict(_merge({**base, "storage": storage.url}, given))
    storage = storage.with_artifacts(cfg.artifacts_dir)
    storage.check_artifacts()  # unreachable / read-only artifacts: a ConfigError naming artifacts_dir, now
    storage.enable_heartbeat(cfg.study.heartbeat_interval, max_retry=cfg.study.max_retry)
    return cfg, storage


def cmd_worker(overrides: Sequence[str]) -> int:
    from nas.storage import fail_trials_of, reap_dead_trials, run_despite_outages
    from nas.workers import EXIT_GUARD
    from nas.study import open_session, run_trials

    cfg, storage = _join(overrides)
    index = _worker_index()
    if os.environ.get("OMP_NUM_THREADS") == "1":
        import torch

        torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker{index} %(levelname)s %(name)s: %(message)s")
    session = open_session(cfg, worker_index=index, storage=storage)
    reap_dead_trials(session.study)  # trials left RUNNING by dead processes, even when the count is reached

    def interrupted() -> None:  # the trial this process was running when the database went away
        fail_trials_of(session.study, os.getpid(), "worker lost the storage mid-trial (database restarted?)")

    # the database may restart under a worker nobody supervises (started by hand on another machine)
    guard = run_despite_outages(lambda: run_trials(session), on_reconnect=interrupted)
    reap_dead_trials(session.study, settle=True)  # a trial whose creation an outage cut off is nobody's
    if guard.tripped:
        print(f"logah-nas worker: {guard.in_a_row} trials failed in a row, last: {guard.last_reason}", file=sys.stderr)
        return EXIT_GUARD  # its supervisor does not restart it
    return 0


def cmd_refitter(overrides: Sequence[str]) -> int:
    from nas.refitter import run_refitter
    from nas.storage import run_despite_outages
    from nas.study import open_session
    from nas.workers import INDEX_ENV, PARENT_ENV, REFITTER

    cfg, storage = _join(overrides)
    if cfg.hypernet.refit_every <= 0:
        raise ConfigError("hypernet.refit_every", cfg.hypernet.refit_every,
                          f"an integer >= 1 for study {cfg.study_name!r} to have refits (it was created with 0)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s refitter %(levelname)s %(name)s: %(message)s")
    session = open_session(cfg, storage=storage)
    stop = None
    parent = os.environ.get(PARENT_ENV)
    if os.environ.get(INDEX_ENV) == str(REFITTER) and parent:  # started by `search`: do not outlive the study's run
        from optuna.trial import TrialState

        def stop() -> bool:  # search is gone (kill -9: reparented) and so are its workers' trials
            return os.getppid() != int(parent) and not session.study.get_trials(
                deepcopy=False, states=(TrialState.RUNNING,))
    report = run_despite_outages(lambda: run_refitter(session, stop=stop))
    _print(report.describe())
    return 0


def _worker_index() -> int:
    """Local workers get 0..N-1 from `search`; a worker started by hand (another machine) gets a
    number derived from host and pid, so its sampler seed differs from every other worker's."""
    import socket
    import zlib

    from nas.workers import INDEX_ENV

    value = os.environ.get(INDEX_ENV)
    if value is not None and value.isdigit():
        return int(value)
    return 1000 + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 1_000_000


def cmd_export(overrides: Sequence[str]) -> int:
    """Prints the export's path (stdout, for scripts); a note on stderr when the default export
    (the best warm-started trial) is not the best trial overall."""
    from nas.artifacts import export_trial, exported_test_metrics, select_trial
    from nas.config import compose
    from nas.storage import StudyStorage
    from nas.study import export_note

    cfg = compose(overrides)
    storage = StudyStorage.open(cfg.storage, cfg.artifacts_dir)
    study = storage.load_study(cfg.study_name)
    chosen = select_trial(study, cfg.trial)
    path = export_trial(storage, study, cfg.export_dir, trial_number=chosen.number)
    _print(str(path))
    test = exported_test_metrics(path)
    if test:
        print(f"test split: {_test_text(test)}", file=sys.stderr, flush=True)
    note = export_note(study, chosen) if cfg.trial is None else None
    if note:
        print(note, file=sys.stderr, flush=True)
    return 0


def cmd_pretrain(overrides: Sequence[str]) -> int:
    from nas.config import compose

    cfg = compose(overrides)
    try:
        from nas.pretrain import pretrain
    except ImportError as exc:
        raise UsageError(f"pretraining is unavailable: {exc}") from None
    p = cfg.pretrain
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    space_options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.space.items() if k != "name"}
    recipe = p.recipe(seed=cfg.seed)  # the pretrain block + the top-level seed
    path = pretrain(space=cfg.space["name"], data=cfg.data.name, variant=cfg.hypernet.variant, out=p.out,
                    device=cfg.device, data_options=cfg.data.options, space_options=space_options,
                    progress=sys.stderr.isatty(), init=p.init,
                    **{f.name: getattr(recipe, f.name) for f in fields(recipe)})
    _print(str(path))
    return 0


def cmd_dashboard(overrides: Sequence[str]) -> int:
    """Streamlit on 127.0.0.1:`port`, reading `storage` (password passed via the environment)."""
    from nas.config import compose
    from nas.dashboard import launch

    cfg = compose(overrides)
    process = launch(cfg.storage, port=cfg.port, artifacts=cfg.artifacts_dir)  # no app/main.py: FileNotFoundError
    _print(f"dashboard: http://127.0.0.1:{cfg.port} (Ctrl+C stops it)")
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait(10)
        raise


def cmd_predict(overrides: Sequence[str]) -> int:
    """Its own key=value args (nas.predict.parse_predict_args), not the Hydra tree: a prediction needs no study."""
    from nas.predict import parse_predict_args, predict_export

    path = predict_export(parse_predict_args(overrides))
    _print(f"predicted weights written to {path} (load: transformers from_pretrained / pipeline, or "
           "nas.export.load_exported)")
    return 0


HANDLERS = {"search": cmd_search, "worker": cmd_worker, "refitter": cmd_refitter, "export": cmd_export,
            "pretrain": cmd_pretrain, "dashboard": cmd_dashboard, "predict": cmd_predict}


# ---- entry point --------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(_usage(), file=sys.stderr)
        return EXIT_USAGE
    if argv[0] in ("-h", "--help", "help"):
        _print(_usage())
        return 0
    command, overrides = argv[0], argv[1:]
    if any(o in ("-h", "--help") for o in overrides):
        _print(_usage())
        return 0
    debug = os.environ.get("LOGAH_DEBUG") == "1"
    _stop_children_on_sigterm()
    try:
        if command not in HANDLERS:
            raise UsageError(f"unknown command {command!r}: allowed {list(COMMANDS)}")
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # we print our own summary lines
        return HANDLERS[command](overrides)
    except KeyboardInterrupt:
        print("logah-nas: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        if _is_user_error(exc):
            print(f"logah-nas: error: {_masked(exc)}", file=sys.stderr)
            return EXIT_USAGE
        from nas.storage import storage_write_error

        unwritable = storage_write_error(exc)
        if unwritable:  # not a bug and not an outage: the user must free space or fix permissions
            print(f"logah-nas: error: the study's database cannot be written ({unwritable}); free disk space or "
                  "make the database file writable (or use another storage=), then run the same command to resume",
                  file=sys.stderr)
            return EXIT_USAGE
        print(f"logah-nas: error: {type(exc).__name__}: {_masked(exc)} (LOGAH_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_FAILED


def _stop_children_on_sigterm() -> None:
    """SIGTERM (e.g. from a scheduler) unwinds like Ctrl+C, so `search` and `dashboard` stop the
    processes they started instead of leaving them orphaned."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        def _raise(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _raise)


def _is_user_error(exc: BaseException) -> bool:
    """Errors caused by what the user typed or pointed us at (a config value, a missing file,
    a checkpoint of another space): exit code 2, no traceback."""
    from hypernet.checkpoint import CheckpointError

    return isinstance(exc, (ConfigError, UsageError, FileNotFoundError, CheckpointError))



def _masked(exc: BaseException) -> str:
    from nas.secrets import mask_url

    text = " ".join(str(exc).split())  # one line
    return mask_url(text)


if __name__ == "__main__":
    sys.exit(main())
