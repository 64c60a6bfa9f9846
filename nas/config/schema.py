"""The schema of a `logah-nas` config: frozen, validated dataclasses and `from_dict`.

Validation happens here, before any study is touched, so a typo cannot create a half-configured
study in a shared database; every check is one of `search_spaces.validate`'s and names the dotted
key (`study.steps`, `pretrain.lr`, ...). No Hydra here: `nas.config.composition` composes
`nas/conf` into the dict that `from_dict` validates (a stored study config takes the same path).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Mapping

from nas.recipe import Recipe, RecipeOptions
from nas.storage import DEFAULT_ARTIFACTS, DEFAULT_STORAGE

INIT_STRATEGIES = ("hypernet", "random", "pytorch", "mimetic", "inherit")  # nas.init_strategies implements them
from search_spaces import SPACES, ConfigError, SearchSpace, get_space
from search_spaces.validate import require_choice, require_int, require_interval, require_range

GROUPS = ("space", "data", "hypernet", "study")
SAMPLERS = ("tpe", "random")
REFIT_IN = ("refitter", "worker")
SCREEN_PICKS = ("best", "best_per_size")  # nas.screen.pick
PRUNERS = ("median", "hyperband", "none")
VARIANTS = ("tiny", "small", "base", "large")
KIND_OF_SPACE = {"vit": "image", "gpt2": "text"}
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


@dataclass(frozen=True)
class DataConfig:
    name: str
    kind: str  # "image" | "text": lets us reject space/data mismatches before loading anything
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from nas.data import DATASETS, dataset_options

        require_choice("data", self.name, sorted(DATASETS))
        require_choice("data.kind", self.kind, ["image", "text"])
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
    screen_pick: str = "best"  # best: the best-scored of all | best_per_size: the best of each parameter-count stratum
    refit_every: int = 6
    refit_max_share: float = 1.0  # refits may take at most this share of the study's compute (1: no cap), nas.refit.refit_due
    refit_steps: int = 60
    refit_lr: float = 1e-4
    refit_meta_batch: int = 1
    refit_batch_size: int = 32
    study_arch_fraction: float = 0.5
    distill_weight: float = 1.0
    distill_trials: int = 4
    heldout_archs: int = 4
    heldout_best: int = 2
    promote_steps: int = 20  # a refit is promoted on val loss after this many fine-tuning steps (0: as predicted)
    # The refit's meta-loss also scores each prediction after this many real AdamW steps at the
    # study's lr (first order; `MetaTrainConfig.unroll_steps`): what promotion asks for. 0: off.
    refit_unroll_steps: int = 0
    refit_at_warm_strength: bool = True  # score init + warm_strength * (prediction - init), what warm trials start from
    lease_ttl_s: float = 120.0
    refit_in: str = "refitter"  # refitter: a process of its own (nas.refitter) | worker: a worker's trial callback

    def __post_init__(self) -> None:
        require_choice("hypernet.variant", self.variant, VARIANTS)
        require_choice("hypernet.refit_in", self.refit_in, REFIT_IN)
        if not isinstance(self.checkpoint, str) or not self.checkpoint:
            raise ConfigError("hypernet.checkpoint", self.checkpoint, "'auto', 'none' or a path to a .safetensors file")
        require_range("hypernet.warm_strength", self.warm_strength, 0.0, 1.0, lo_open=True)
        require_int("hypernet.screen_candidates", self.screen_candidates, 0, 10_000)
        require_choice("hypernet.screen_pick", self.screen_pick, SCREEN_PICKS)
        require_int("hypernet.refit_every", self.refit_every, 0)
        require_range("hypernet.refit_max_share", self.refit_max_share, 0.0, 1.0, lo_open=True)
        require_int("hypernet.refit_steps", self.refit_steps, 1)
        require_range("hypernet.refit_lr", self.refit_lr, 0.0, 1.0, lo_open=True)
        require_int("hypernet.refit_meta_batch", self.refit_meta_batch, 1)
        require_int("hypernet.refit_batch_size", self.refit_batch_size, 1)
        require_range("hypernet.study_arch_fraction", self.study_arch_fraction, 0.0, 1.0)
        require_range("hypernet.distill_weight", self.distill_weight, 0.0, 1e6)
        require_int("hypernet.distill_trials", self.distill_trials, 0)
        require_int("hypernet.heldout_archs", self.heldout_archs, 0)
        require_int("hypernet.heldout_best", self.heldout_best, 0)
        if self.heldout_archs + self.heldout_best == 0:
            raise ConfigError("hypernet.heldout_archs", self.heldout_archs,
                              "an integer >= 1 when hypernet.heldout_best=0 (validation needs architectures)")
        require_range("hypernet.lease_ttl_s", self.lease_ttl_s, 1.0, 86400.0)
        require_int("hypernet.promote_steps", self.promote_steps, 0, 100_000)
        require_int("hypernet.refit_unroll_steps", self.refit_unroll_steps, 0, 1_000)
        if not isinstance(self.refit_at_warm_strength, bool):
            raise ConfigError("hypernet.refit_at_warm_strength", self.refit_at_warm_strength, "true or false")


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
    init: str = "hypernet"  # how trials start (nas.init_strategies): hypernet | random | pytorch | mimetic | inherit
    control_init: str = "random"  # how control trials start (the baseline the study measures against)
    max_params: int = 1_000_000
    heartbeat_interval: int | None = 30
    max_retry: int | None = 2
    max_consecutive_failures: int = 5
    safety_batches: int = 2  # val batches scoring a warm trial's prediction against its init (nas/safety.py); 0: off

    def __post_init__(self) -> None:
        require_choice("study.sampler", self.sampler, SAMPLERS)
        require_choice("study.pruner", self.pruner, PRUNERS)
        require_int("study.n_startup_trials", self.n_startup_trials, 0)
        require_int("study.steps", self.steps, 1)
        require_int("study.eval_every", self.eval_every, 1)
        require_int("study.eval_batches", self.eval_batches, 1)
        require_int("study.warmup_steps", self.warmup_steps, 0)
        if self.grad_clip is not None:
            require_range("study.grad_clip", self.grad_clip, 0.0, 1e6, lo_open=True)
        object.__setattr__(self, "lr", require_interval("study.lr", self.lr, 0.0, 1.0, lo_open=True))
        object.__setattr__(self, "weight_decay", require_interval("study.weight_decay", self.weight_decay, 0.0, 1.0))
        if not isinstance(self.batch_sizes, (list, tuple)) or not self.batch_sizes:
            raise ConfigError("study.batch_sizes", self.batch_sizes, "a non-empty list of integers >= 1")
        object.__setattr__(self, "batch_sizes",
                           tuple(require_int("study.batch_sizes", b, 1) for b in self.batch_sizes))
        require_range("study.control_fraction", self.control_fraction, 0.0, 1.0)
        require_choice("study.init", self.init, INIT_STRATEGIES)
        require_choice("study.control_init", self.control_init, INIT_STRATEGIES)
        require_int("study.max_params", self.max_params, 1)
        if self.heartbeat_interval is not None:
            require_int("study.heartbeat_interval", self.heartbeat_interval, 1)
        if self.max_retry is not None:
            require_int("study.max_retry", self.max_retry, 0)
        require_int("study.max_consecutive_failures", self.max_consecutive_failures, 1)
        require_int("study.safety_batches", self.safety_batches, 0, 1000)


@dataclass(frozen=True, kw_only=True)
class PretrainConfig(RecipeOptions):
    """The `pretrain` block: a `Recipe` without its seed (the config's top-level `seed`), plus where
    the checkpoint goes (`out`, None: `nas.pretrain.default_out`) and what it starts from (`init`)."""

    _prefix: ClassVar[str] = "pretrain."

    out: str | None = None
    init: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("out", "init"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"pretrain.{name}", value, "null or a .safetensors path")

    def recipe(self, seed: int) -> Recipe:
        """The recipe this block and the config's `seed` describe."""
        return Recipe(seed=seed, **self.options())


@dataclass(frozen=True)
class NASConfig:
    space: dict[str, Any]  # {"name": "vit", **ranges}; sizes (image_size, vocab_size, ...) come from the data
    data: DataConfig
    hypernet: HypernetConfig
    study: StudyConfig
    study_name: str
    storage: str = DEFAULT_STORAGE
    artifacts_dir: str = DEFAULT_ARTIFACTS
    export_dir: str = "logah_runs/exports"
    n_trials: int = 64
    workers: int = 2
    worker_restarts: int = 3
    seed: int = 0
    device: str = "auto"
    trial: int | None = None
    port: int = 8501
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def __post_init__(self) -> None:
        name = self.space.get("name")
        require_choice("space", name, sorted(SPACES))
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
        require_int("n_trials", self.n_trials, 1)
        require_int("workers", self.workers, 1, 64)
        require_int("worker_restarts", self.worker_restarts, 0, 1000)
        require_int("seed", self.seed, 0)
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError("device", self.device, "'auto', 'cpu', 'cuda' or 'cuda:N'")
        if self.trial is not None:
            require_int("trial", self.trial, 0)
        require_int("port", self.port, 1, 65535)

    def _check_space_ranges(self) -> None:
        """Validate the ranges now with representative data sizes (the real ones come from the data)."""
        ranges = {k: v for k, v in self.space.items() if k != "name"}
        cls = SPACES[self.space["name"]]
        known = sorted(f.name for f in fields(cls) if f.init and f.name not in _SIZE_FIELDS)
        unknown = sorted(set(ranges) - set(known))
        if unknown:
            raise ConfigError(f"space.{unknown[0]}", ranges[unknown[0]], f"a range of {cls.__name__}: {known}")
        sizes = {}
        if self.space["name"] == "vit":
            from nas.data import image_shape

            image_size, channels = image_shape(self.data.name, self.data.options)
            sizes = {"image_size": image_size, "channels": channels}
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


__all__ = ["DataConfig", "GROUPS", "HypernetConfig", "KIND_OF_SPACE", "NASConfig", "PRUNERS", "PretrainConfig",
           "SAMPLERS", "StudyConfig", "VARIANTS", "from_dict"]
