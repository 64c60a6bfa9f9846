"""How a trial's model is initialised before it trains: one small contract, several strategies.

A study's trials use `study.init` (default `hypernet`), its control trials (`study.control_fraction`)
`study.control_init` (default `random`), so a user compares warm starts with the baseline of their
choice on their own search, or runs a whole study with a baseline:

- `hypernet`: the newest promoted hypernet version's prediction at `hypernet.warm_strength`;
- `random`: the models' own GPT-2 scheme (N(0, 0.02), residual projections / sqrt(2L));
- `pytorch`: PyTorch's default constructors' init;
- `mimetic`: closed-form attention init (Trockman & Kolter 2023);
- `inherit`: weight selection from the trained weights of the study's most similar completed trial.

Every strategy starts from the same seeded random model (`trial_recipe.trial_seed`), so two trials of
the same number differ only by what the strategy changes.
"""
from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from optuna.trial import TrialState

from nas import attrs
from nas.config.schema import INIT_STRATEGIES  # the config key's allowed values: these strategies

if TYPE_CHECKING:
    from nas.session import Session
    from search_spaces import ModelConfig



class InitStrategy(ABC):
    """Writes a trial's initial parameters into its freshly built (seeded, GPT-2-scheme) model."""

    name: ClassVar[str]
    uses_hypernet: ClassVar[bool] = False

    @abstractmethod
    def apply(self, model: torch.nn.Module, config: ModelConfig, seed: int) -> dict[str, Any]:
        """Initialise `model` in place; returns trial user attrs to record (what was done)."""


class RandomInit(InitStrategy):
    name = "random"

    def apply(self, model, config, seed):
        return {}


class PyTorchInit(InitStrategy):
    name = "pytorch"

    def apply(self, model, config, seed):
        from search_spaces.inits import pytorch_default_init

        pytorch_default_init(model, torch.Generator().manual_seed(seed))
        return {}


class MimeticInit(InitStrategy):
    name = "mimetic"

    def apply(self, model, config, seed):
        from search_spaces.inits import mimetic_init

        mimetic_init(model, torch.Generator().manual_seed(seed))
        return {}


class HypernetInit(InitStrategy):
    name = "hypernet"
    uses_hypernet = True

    def __init__(self, session: Session) -> None:
        from nas.hypernets import HypernetCache

        self.strength = session.cfg.hypernet.warm_strength
        self.hypernets = HypernetCache(session.storage, session.cfg.study_name)
        self.applied: Any = None  # the hypernet of the last `apply` (the safety net re-applies it, nas.safety)

    def apply(self, model, config, seed):
        version, hn = self.hypernets.latest()
        self.applied = hn
        t0 = time.perf_counter()
        hn.apply(model, strength=self.strength)
        return {attrs.PREDICT_SECONDS: time.perf_counter() - t0, attrs.WARM_STRENGTH: self.strength,
                attrs.HYPERNET_VERSION: version.version}


class InheritInit(InitStrategy):
    """Weight selection from the completed trial whose architecture is closest (`distance`); with
    none yet, the trial keeps its random init (and says so)."""

    name = "inherit"

    def __init__(self, session: Session) -> None:
        self.session = session

    def apply(self, model, config, seed):
        from nas.refit import load_trial_weights
        from search_spaces import config_from_dict
        from search_spaces.inits import inherit_weights

        donors = [t for t in self.session.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if attrs.WEIGHTS in t.user_attrs and attrs.CONFIG in t.user_attrs]
        if not donors:
            return {attrs.INIT_SOURCE: None}
        donor = min(donors, key=lambda t: (distance(config, config_from_dict(t.user_attrs[attrs.CONFIG])), t.value))
        inherit_weights(model, load_trial_weights(donor, self.session.storage.artifacts))
        return {attrs.INIT_SOURCE: donor.number}


def distance(a: ModelConfig, b: ModelConfig) -> float:
    """How far apart two architectures are for weight inheritance: width and depth on a log scale,
    plus one for every other shape field that differs (patch size, MLP ratio, tying)."""
    d = abs(math.log2(a.width / b.width)) + abs(math.log2(a.depth / b.depth))
    for field in ("patch_size", "mlp_ratio", "tied_embeddings", "context"):
        d += float(getattr(a, field, None) != getattr(b, field, None))
    return d


_CLASSES = {cls.name: cls for cls in (HypernetInit, RandomInit, PyTorchInit, MimeticInit, InheritInit)}


assert set(_CLASSES) == set(INIT_STRATEGIES)


def make_strategy(name: str, session: Session) -> InitStrategy:
    cls = _CLASSES[name]
    return cls(session) if cls in (HypernetInit, InheritInit) else cls()


__all__ = ["INIT_STRATEGIES", "InitStrategy", "distance", "make_strategy"]
