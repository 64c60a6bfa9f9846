"""Hydra composition of `nas/conf` into a validated `NASConfig`, and Hydra's errors translated.

We compose with Hydra's compose API (not `@hydra.main`) so the CLI owns error handling and the
working directory: a bad override becomes one `ConfigError` line naming the key and what is
allowed, never a Hydra traceback. Hydra is imported only when a config is composed.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from search_spaces import ConfigError

from .schema import GROUPS, NASConfig, from_dict


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
        key, _, value = item.lstrip("+~").partition("=")
        if key in GROUPS and value.startswith("_"):  # a shared part of the group's files, not a choice
            raise ConfigError(key, value, f"one of {group_options(key)}")
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
    """The choices of a config group: its files (e.g. `space` -> ['gpt2', 'vit']), except those
    whose name starts with `_` (keys the choices share, e.g. `hypernet/_shared.yaml`)."""
    from importlib.resources import files

    return sorted(p.name.removesuffix(".yaml") for p in files("nas.conf").joinpath(group).iterdir()
                  if p.name.endswith(".yaml") and not p.name.startswith("_"))


def _group_exists(group: str, value: str) -> bool:
    return value in group_options(group)


__all__ = ["compose", "compose_dict", "group_options"]
