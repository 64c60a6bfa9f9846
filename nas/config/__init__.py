"""The `logah-nas` config: a schema of validated dataclasses, composed from `nas/conf` by Hydra.

- `nas.config.schema`: `NASConfig` and its groups (`DataConfig`, `HypernetConfig`, `StudyConfig`,
  `PretrainConfig` = the pretraining `nas.recipe.Recipe` without its seed, plus `out`/`init`) and
  `from_dict` (a composed or stored config dict -> `NASConfig`). No Hydra.
- `nas.config.composition`: `compose(overrides)`, `compose_dict(overrides)`, `group_options(group)`;
  Hydra's errors become one `ConfigError` naming the dotted key and what is allowed.
"""
from .composition import compose, compose_dict, group_options
from .schema import (GROUPS, KIND_OF_SPACE, PRUNERS, SAMPLERS, VARIANTS, DataConfig, HypernetConfig, NASConfig,
                     PretrainConfig, StudyConfig, from_dict)

__all__ = ["DataConfig", "GROUPS", "HypernetConfig", "KIND_OF_SPACE", "NASConfig", "PRUNERS", "PretrainConfig",
           "SAMPLERS", "StudyConfig", "VARIANTS", "compose", "compose_dict", "from_dict", "group_options"]
