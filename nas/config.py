"""Hydra composition of `nas/conf` into typed, validated dataclasses.

We compose with Hydra's compose API (not `@hydra.main`) so the CLI owns error handling and the
working directory: a bad override becomes one `ConfigError` line naming the key and what is
allowed, never a Hydra traceback. Validation happens here, before any study is touched, so a
typo cannot create a half-configured study in a shared database.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

from search_spaces import SPACES, ConfigError, SearchSpace, get_space

GROUPS = ("space", "data", "hypernet", "study")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")
VARIANTS = ("tiny", "small", "base", "large")
KIND_OF_SPACE = {"vit": "image", "gpt2": "text"}
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


def _int(field_name: str, value: Any, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        raise ConfigError(field_name, value, f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else ""))
    return value


def _float(field_name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        raise ConfigError(field_name, value, f"a number in {'(' if lo_open else '['}{lo}, {hi}]")
    return float(value)


def _choice(field_name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(field_name, value, f"one of {list(allowed)}")
    return value


def _range(field_name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(field_name, value, "[low, high]")
    a = _float(f"{field_name}[0]", value[0], lo, hi, lo_open)
    b = _float(f"{field_name}[1]", value[1], lo, hi, lo_open)
    if a > b:
        raise ConfigError(field_name, list(value), "[low, high] with low <= high")
    return a, b


@dataclass(frozen=True)
class DataConfig:
    name: str
    kind: str  # "image" | "text": lets us reject space/data mismatches before loading anything
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from nas.data import DATASETS, dataset_options

        _choice("data", self.name, sorted(DATASETS))
        _choice("data.kind", self.kind, ["image", "text"])
        known = dataset_options(self.name)
        for key, value in self.options.items():
            if key not in known:
                raise ConfigError(f"data.options.{key}", value, f"an option of data={self.name}: {sorted(known)}")

    def load(self):
        from nas.data import load_dataset

        return load_dataset(self.name, **self.options)


@dataclass(frozen=True)
class HypernetConfig:
    variant: str = "tiny"
    checkpoint: str = "auto"  # auto | none | path to a .safetensors checkpoint
    warm_strength: float = 0.5  # warm start = init + strength * (prediction - init), see LoGAH.apply
    screen_candidates: int = 16  # startup trials = best of N hypernet-scored architectures (nas/screen.py); 0: off
    refit_every: int = 6
    refit_steps: int = 60
    refit_lr: float = 1e-4
    refit_meta_batch: int = 1
    refit_batch_size: int = 32
    study_arch_fraction: float = 0.5
    distill_weight: float = 1.0
    distill_trials: int = 4
    heldout_archs: int = 4
    heldout_best: int = 2
    lease_ttl_s: float = 120.0

    def __post_init__(self) -> None:
        _choice("hypernet.variant", self.variant, VARIANTS)
        if not isinstance(self.checkpoint, str) or not self.checkpoint:
            raise ConfigError("hypernet.checkpoint", self.checkpoint, "'auto', 'none' or a path to a .safetensors file")
        _float("hypernet.warm_strength", self.warm_strength, 0.0, 1.0, lo_open=True)
        _int("hypernet.screen_candidates", self.screen_candidates, 0, 10_000)
        _int("hypernet.refit_every", self.refit_every, 0)
        _int("hypernet.refit_steps", self.refit_steps, 1)
        _float("hypernet.refit_lr", self.refit_lr, 0.0, 1.0, lo_open=True)
        _int("hypernet.refit_meta_batch", self.refit_meta_batch, 1)
        _int("hypernet.refit_batch_size", self.refit_batch_size, 1)
        _float("hypernet.study_arch_fraction", self.study_arch_fraction, 0.0, 1.0)
        _float("hypernet.distill_weight", self.distill_weight, 0.0, 1e6)
        _int("hypernet.distill_trials", self.distill_trials, 0)
        _int("hypernet.heldout_archs", self.heldout_archs, 0)
        _int("hypernet.heldout_best", self.heldout_best, 0)
        if self.heldout_archs + self.heldout_best == 0:
            raise ConfigError("hypernet.heldout_archs", self.heldout_archs,
                              "an integer >= 1 when hypernet.heldout_best=0 (validation needs architectures)")
        _float("hypernet.lease_ttl_s", self.lease_ttl_s, 1.0, 86400.0)


@dataclass(frozen=True)
class StudyConfig:
    sampler: str = "tpe"
    pruner: str = "median"
    n_startup_trials: int = 4
    steps: int = 400
    eval_every: int = 100
    eval_batches: int = 4
    warmup_steps: int = 10
    grad_clip: float | None = 1.0
    lr: tuple[float, float] = (3e-4, 3e-3)
    weight_decay: tuple[float, float] = (0.0, 0.1)
    batch_sizes: tuple[int, ...] = (32, 64)
    control_fraction: float = 0.25
    max_params: int = 1_000_000
    heartbeat_interval: int | None = 30
    max_retry: int | None = 2
    max_consecutive_failures: int = 5

    def __post_init__(self) -> None:
        _choice("study.sampler", self.sampler, SAMPLERS)
        _choice("study.pruner", self.pruner, PRUNERS)
        _int("study.n_startup_trials", self.n_startup_trials, 0)
        _int("study.steps", self.steps, 1)
        _int("study.eval_every", self.eval_every, 1)
        _int("study.eval_batches", self.eval_batches, 1)
        _int("study.warmup_steps", self.warmup_steps, 0)
        if self.grad_clip is not None:
            _float("study.grad_clip", self.grad_clip, 0.0, 1e6, lo_open=True)
        object.__setattr__(self, "lr", _range("study.lr", self.lr, 0.0, 1.0, lo_open=True))
        object.__setattr__(self, "weight_decay", _range("study.weight_decay", self.weight_decay, 0.0, 1.0))
        if not isinstance(self.batch_sizes, (list, tuple)) or not self.batch_sizes:
            raise ConfigError("study.batch_sizes", self.batch_sizes, "a non-empty list of integers >= 1")
        object.__setattr__(self, "batch_sizes",
                           tuple(_int("study.batch_sizes", b, 1) for b in self.batch_sizes))
        _float("study.control_fraction", self.control_fraction, 0.0, 1.0)
        _int("study.max_params", self.max_params, 1)
        if self.heartbeat_interval is not None:
            _int("study.heartbeat_interval", self.heartbeat_interval, 1)
        if self.max_retry is not None:
            _int("study.max_retry", self.max_retry, 0)
        _int("study.max_consecutive_failures", self.max_consecutive_failures, 1)


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 2000
    out: str | None = None
    meta_batch: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    lookahead: float = 0.0
    unroll_steps: int = 0
    unroll_lr: float = 1e-3
    input_noise: float = 0.0
    shallow_share: float = 0.0
    init: str | None = None

    def __post_init__(self) -> None:
        _int("pretrain.steps", self.steps, 1)
        _int("pretrain.meta_batch", self.meta_batch, 1)
        _int("pretrain.batch_size", self.batch_size, 1)
        _float("pretrain.lr", self.lr, 0.0, 1.0, lo_open=True)
        _float("pretrain.lookahead", self.lookahead, 0.0, 1.0)
        _int("pretrain.unroll_steps", self.unroll_steps, 0)
        _float("pretrain.unroll_lr", self.unroll_lr, 0.0, 1.0, lo_open=True)
        _float("pretrain.input_noise", self.input_noise, 0.0, 10.0)
        _float("pretrain.shallow_share", self.shallow_share, 0.0, 1.0)
        for name in ("out", "init"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"pretrain.{name}", value, "null or a .safetensors path")


@dataclass(frozen=True)
class NASConfig:
    space: dict[str, Any]  # {"name": "vit", **ranges}; sizes (image_size, vocab_size, ...) come from the data
    data: DataConfig
    hypernet: HypernetConfig
    study: StudyConfig
    study_name: str
    storage: str = "sqlite:///logah_runs/study.db"
    artifacts_dir: str = "logah_runs/artifacts"
    export_dir: str = "logah_runs/exports"
    n_trials: int = 64
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    trial: int | None = None
    port: int = 8501
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def __post_init__(self) -> None:
        name = self.space.get("name")
        _choice("space", name, sorted(SPACES))
        if KIND_OF_SPACE[name] != self.data.kind:
            wanted = sorted(n for n, k in _data_kinds().items() if k == KIND_OF_SPACE[name])
            kind = KIND_OF_SPACE[name]
            raise ConfigError("data", self.data.name, f"{'an' if kind == 'image' else 'a'} {kind} dataset for "
                                                      f"space={name}: {wanted}")
        self._check_space_ranges()
        if not isinstance(self.study_name, str) or not _STUDY_NAME.match(self.study_name):
            raise ConfigError("study_name", self.study_name,
                              "1-128 characters: letters, digits and _ . : - (starting with a letter or digit)")
        _check_url(self.storage)
        for key in ("artifacts_dir", "export_dir"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(key, getattr(self, key), "a directory path")
        _int("n_trials", self.n_trials, 1)
        _int("workers", self.workers, 1, 64)
        _int("seed", self.seed, 0)
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError("device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
        if self.trial is not None:
            _int("trial", self.trial, 0)
        _int("port", self.port, 1, 65535)

    def _check_space_ranges(self) -> None:
        """Validate the ranges now with representative data sizes (the real ones come from the data)."""
        ranges = {k: v for k, v in self.space.items() if k != "name"}
        cls = SPACES[self.space["name"]]
        known = sorted(f.name for f in fields(cls) if f.init and f.name not in _SIZE_FIELDS)
        unknown = sorted(set(ranges) - set(known))
        if unknown:
            raise ConfigError(f"space.{unknown[0]}", ranges[unknown[0]], f"a range of {cls.__name__}: {known}")
        sizes = {"vit": {"image_size": 32 if self.data.name.startswith("cifar") else 8,
                         "channels": 3 if self.data.name.startswith("cifar") else 1},
                 "gpt2": {}}[self.space["name"]]
        try:
            self.make_space(**sizes, _ranges=ranges)
        except ConfigError as exc:
            raise ConfigError(f"space.{exc.field}", exc.value, exc.allowed) from None

    def make_space(self, _ranges: dict[str, Any] | None = None, **sizes: Any) -> SearchSpace:
        """The search space with these ranges and the dataset's sizes (`dataset.space_options()`)."""
        ranges = _ranges if _ranges is not None else {k: v for k, v in self.space.items() if k != "name"}
        ranges = {k: tuple(v) if isinstance(v, list) else v for k, v in ranges.items()}
        return get_space(self.space["name"], **ranges, **sizes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the study's `config` attr; secrets must be masked by the caller)."""
        d = asdict(self)
        for group in ("study",):
            d[group] = {k: list(v) if isinstance(v, tuple) else v for k, v in d[group].items()}
        return d


_SIZE_FIELDS = {"image_size", "channels", "num_classes", "vocab_size"}  # from the dataset, not the ranges
def _data_kinds() -> dict[str, str]:
    """{data group option: its `kind`} read from nas/conf/data/*.yaml (one source of truth)."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    out = {}
    for p in files("nas.conf").joinpath("data").iterdir():
        if p.name.endswith(".yaml"):
            out[p.name.removesuffix(".yaml")] = OmegaConf.create(p.read_text()).get("kind")
    return out


def _check_url(url: Any) -> None:
    from sqlalchemy.engine import make_url

    allowed = "an SQLAlchemy URL such as sqlite:///logah_runs/study.db or postgresql+psycopg://user:pass@host/db"
    if not isinstance(url, str) or not url:
        raise ConfigError("storage", url, allowed)
    try:
        parsed = make_url(url)
    except Exception:
        from nas.secrets import mask_url

        raise ConfigError("storage", mask_url(url), allowed) from None
    try:  # make_url only parses: an unknown dialect would otherwise fail later, far from the field
        parsed.get_dialect()
    except Exception:
        from nas.secrets import mask_url

        raise ConfigError("storage", mask_url(url), f"{allowed} (dialect {parsed.drivername!r} is not "
                                                    "installed)") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError("storage", url, "a database file or server: in-memory SQLite is not shared between the "
                                          "connections and processes of a study")


def from_dict(d: Mapping[str, Any]) -> NASConfig:
    """Validate a composed (or stored) config dict into a `NASConfig`."""
    d = dict(d)
    known = {f.name for f in fields(NASConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(unknown[0], d[unknown[0]], f"a top-level key: {sorted(known | set(GROUPS))}")
    for group in GROUPS:
        if not isinstance(d.get(group), Mapping):
            raise ConfigError(group, d.get(group), f"a config group (choose with {group}=NAME)")
    space = dict(d.pop("space"))
    data = _typed("data", DataConfig, d.pop("data"))
    hypernet = _typed("hypernet", HypernetConfig, d.pop("hypernet"))
    study = _typed("study", StudyConfig, d.pop("study"))
    if "pretrain" in d:
        if not isinstance(d["pretrain"], Mapping):
            raise ConfigError("pretrain", d["pretrain"], "a mapping of pretrain options")
        d["pretrain"] = _typed("pretrain", PretrainConfig, d["pretrain"])
    if d.get("study_name") in (None, ""):
        d["study_name"] = f"{space.get('name')}-{data.name}"
    return NASConfig(space=space, data=data, hypernet=hypernet, study=study, **d)


def _typed(group: str, cls: type, values: Mapping[str, Any]):
    values = dict(values)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{group}.{unknown[0]}", values[unknown[0]], f"a key of {group}: {sorted(known)}")
    if cls is DataConfig:
        values["options"] = dict(values.get("options") or {})
    try:
        return cls(**values)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(group, sorted(values), f"all of {sorted(known)} ({exc})") from None


def compose(overrides: Sequence[str] = ()) -> NASConfig:
    """Compose `nas/conf/config.yaml` with Hydra `key=value` overrides and validate it."""
    return from_dict(compose_dict(overrides))


def compose_dict(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The resolved config as a plain dict (before validation)."""
    from hydra import compose as _compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, None, "an override of the form key=value (e.g. n_trials=8, space=gpt2)")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="nas.conf", version_base=None):
            cfg = _compose(config_name="config", overrides=overrides)
        return OmegaConf.to_container(cfg, resolve=True)
    except MissingConfigException as exc:
        raise _group_error(exc, overrides) from None
    except (ConfigCompositionException, HydraException, OmegaConfBaseException) as exc:
        raise _override_error(exc, overrides) from None
    finally:
        GlobalHydra.instance().clear()


def _group_error(exc: Exception, overrides: Sequence[str]) -> ConfigError:
    """`space=foo` -> ConfigError('space', 'foo', 'one of [gpt2, vit]')."""
    for group in GROUPS:
        for item in overrides:
            key, _, value = item.lstrip("+~").partition("=")
            if key == group and not _group_exists(group, value):
                return ConfigError(group, value, f"one of {group_options(group)}")
    return ConfigError("overrides", list(overrides), f"valid Hydra overrides ({str(exc).splitlines()[0]})")


def _override_error(exc: Exception, overrides: Sequence[str]) -> ConfigError:
    text = str(exc)
    m = re.search(r"Key '([^']+)' is not in struct", text) or re.search(r"Could not override '([^']+)'", text)
    if m:
        key = m.group(1)
        value = next((o.partition("=")[2] for o in overrides if o.lstrip("+~").partition("=")[0] == key), None)
        parent = key.rpartition(".")[0]
        known = _known_keys(parent, overrides)
        where = f" of {parent}" if parent else ""
        return ConfigError(key, value, f"a known key{where}: {known}" if known else f"a known key{where}")
    return ConfigError("overrides", list(overrides), f"valid Hydra overrides ({text.splitlines()[0]})")


def _known_keys(parent: str, overrides: Sequence[str]) -> list[str]:
    """Keys at `parent` of the config composed with only the group choices of `overrides`."""
    groups = [o for o in overrides if o.partition("=")[0] in GROUPS]
    try:
        node: Any = compose_dict(groups)
    except ConfigError:
        return []
    for part in filter(None, parent.split(".")):
        node = node.get(part) if isinstance(node, dict) else None
    return sorted(node) if isinstance(node, dict) else []


def group_options(group: str) -> list[str]:
    """The files of a config group (e.g. `space` -> ['gpt2', 'vit'])."""
    from importlib.resources import files

    return sorted(p.name.removesuffix(".yaml") for p in files("nas.conf").joinpath(group).iterdir()
                  if p.name.endswith(".yaml"))


def _group_exists(group: str, value: str) -> bool:
    return value in group_options(group)


__all__ = ["DataConfig", "GROUPS", "HypernetConfig", "NASConfig", "PretrainConfig", "StudyConfig", "compose", "compose_dict",
           "from_dict", "group_options"]
