"""The hypernet's prediction for any configuration, as an export directory or a `transformers` model.

`logah-nas predict space=gpt2 config=gpt2_l out=exports/gpt2_l` writes what the shipped (or a
given) LoGAH checkpoint predicts for GPT-2-L, in the same layout as a trained trial's export, so
`transformers.pipeline` / `AutoModelForImageClassification` load it. `predicted_hf_model(hf_config)`
does the same from a Hugging Face `GPT2Config` / `ViTConfig` and returns the `transformers` model.

A hypernet predicts for one search space: the space's fixed fields (GPT-2: vocab_size, context;
ViT: image_size, channels, num_classes) come from the checkpoint's signature, never from the preset.
Memory: the model is built without a random init (meta device, then uninitialised storage that
`LoGAH.apply` fills in place), so GPT-2-L (774M parameters) costs one copy of its weights plus the
transposed Conv1D copies the HF layout needs while the file is written.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search_spaces.files import sha256_file
from search_spaces import (GPT2_L, GPT2_M, GPT2_S, VIT_B, VIT_L, VIT_S, ConfigError, GPT2Config, ModelConfig,
                           ViTConfig, build_model, config_from_dict)

PRESETS: dict[str, ModelConfig] = {"gpt2_s": GPT2_S, "gpt2_m": GPT2_M, "gpt2_l": GPT2_L,
                                   "vit_s": VIT_S, "vit_b": VIT_B, "vit_l": VIT_L}
SPACE_FIELDS = {"gpt2": ("vocab_size", "context"), "vit": ("image_size", "channels", "num_classes")}
_CLASSES = {"gpt2": GPT2Config, "vit": ViTConfig}
OPTION_KEYS = ("space", "config", "checkpoint", "out", "strength", "overwrite")


@dataclass(frozen=True)
class PredictRequest:
    """What `logah-nas predict` was asked for (parsed, not yet validated against a checkpoint)."""
    space: str
    preset: str | None = None  # a PRESETS name or a path to a config.json (export or HF)
    fields: Mapping[str, Any] = None  # explicit model fields, e.g. {"depth": 12, "width": 768}
    checkpoint: str = "auto"
    out: str | None = None
    strength: float = 1.0
    overwrite: bool = False


# ---------------------------------------------------------------------------------------------
# command line: logah-nas predict key=value ...
# ---------------------------------------------------------------------------------------------


def _parse_value(key: str, text: str, kind: type) -> Any:
    if kind is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(key, text, "true or false")
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(key, text, f"a {kind.__name__}") from None


def _field_types(space: str) -> dict[str, type]:
    hints = {"int": int, "float": float, "bool": bool}
    return {f.name: hints.get(str(f.type), type(f.default)) for f in fields(_CLASSES[space])}


def parse_predict_args(args: Sequence[str]) -> PredictRequest:
    """`key=value` arguments: space, config (preset name or config.json path), checkpoint (auto | path),
    out, strength, overwrite, and any model field of the space (depth=12 width=768 ...)."""
    given: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.removeprefix("predict.").removeprefix("+")
        if not sep or not key:
            raise ConfigError("predict", arg, "key=value arguments")
        given[key] = value
    preset = given.pop("config", None)
    space = given.pop("space", None)
    if space is None and preset in PRESETS:
        space = PRESETS[preset].space
    if space not in _CLASSES:
        raise ConfigError("space", space, f"one of {sorted(_CLASSES)} (or config=<preset>: {sorted(PRESETS)})")
    if preset in PRESETS and PRESETS[preset].space != space:
        raise ConfigError("config", preset, f"a {space} preset: {sorted(p for p in PRESETS if p.startswith(space))}")
    types = _field_types(space)
    model_fields = {}
    options: dict[str, Any] = {}
    for key, value in given.items():
        if key in types:
            model_fields[key] = _parse_value(key, value, types[key])
        elif key in ("strength",):
            options[key] = _parse_value(key, value, float)
        elif key == "overwrite":
            options[key] = _parse_value(key, value, bool)
        elif key in ("checkpoint", "out"):
            options[key] = value
        else:
            raise ConfigError(key, value, f"one of {sorted([*OPTION_KEYS, *types])}")
    return PredictRequest(space=space, preset=preset, fields=model_fields, **options)


# ---------------------------------------------------------------------------------------------
# hypernet + config
# ---------------------------------------------------------------------------------------------


def load_hypernet(space: str, checkpoint: str | os.PathLike | None = "auto", signature: Mapping | None = None):
    """(hypernet, checkpoint path, meta): `checkpoint` a path, or auto/None = the shipped one for `space`
    (hypernet/pretrained/, matched by space name, or by the full `signature` when given)."""
    from hypernet import load_checkpoint, pretrained_paths

    if checkpoint not in (None, "auto"):
        hn, meta = load_checkpoint(checkpoint)
        if hn.config.space_signature.get("space") != space:
            raise ConfigError("checkpoint", str(checkpoint), f"a {space} hypernet checkpoint, "
                                                             f"got one for {hn.config.space_signature}")
        return hn, Path(checkpoint), meta
    shipped = (pretrained_paths(dict(signature)) if signature is not None
               else pretrained_paths({"space": space}, same_kind=True))
    if not shipped:
        raise ConfigError("checkpoint", "auto", f"a hypernet checkpoint path: none is shipped for space={space}"
                          + (f" with signature {dict(signature)}" if signature else ""))
    hn, meta = load_checkpoint(shipped[0])
    return hn, shipped[0], meta


def _base_config(request: PredictRequest) -> dict[str, Any]:
    if request.preset is None:
        return {}
    if request.preset in PRESETS:
        return PRESETS[request.preset].to_dict()
    path = Path(request.preset)
    if not path.is_file():
        raise ConfigError("config", request.preset, f"a preset {sorted(PRESETS)} or a config.json path")
    from nas.export import _config_from_json

    return _config_from_json(json.loads(path.read_text(encoding="utf-8")), path).to_dict()


def resolve_config(request: PredictRequest, signature: Mapping[str, Any]) -> tuple[ModelConfig, list[str]]:
    """The config to predict: preset, then explicit fields, then the hypernet space's fixed fields.
    Returns it with notes on what the space replaced. An explicit fixed field that disagrees -> ConfigError."""
    doc = {k: v for k, v in _base_config(request).items() if k != "space"}
    explicit = dict(request.fields or {})
    notes = []
    for key in SPACE_FIELDS[request.space]:
        fixed = signature[key]
        if key in explicit and explicit[key] != fixed:
            raise ConfigError(key, explicit[key], f"{fixed}: the hypernet checkpoint predicts for {key}={fixed}")
        if key in doc and doc[key] != fixed:
            notes.append(f"{key} {doc[key]} -> {fixed} (the hypernet's space)")
        doc[key] = fixed
    doc.update(explicit)
    return config_from_dict({"space": request.space, **doc}), notes


# ---------------------------------------------------------------------------------------------
# prediction
# ---------------------------------------------------------------------------------------------


def _empty_model(config: ModelConfig) -> nn.Module:
    """`build_model(config)` without paying for a random init (GPT-2-L: seconds and a second pass over 3 GB).
    Models with buffers (ViT's fixed sin-cos table) are built normally: uninitialised storage would leave them garbage.

    Built on the meta device (`hypernet.graph.meta_model`), then each parameter gets uninitialised CPU
    storage with `torch.empty`, shared parameters (a tied lm_head) once: `Module.to_empty` would untie
    them, and its `empty_like` on meta tensors imports sympy on first use (~0.3 s)."""
    from hypernet.graph import meta_model

    model = meta_model(config)
    if any(True for _ in model.buffers()):
        return build_model(config)
    storage: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for key, p in module._parameters.items():
            if p is not None:
                if id(p) not in storage:
                    storage[id(p)] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype), requires_grad=p.requires_grad)
                module._parameters[key] = storage[id(p)]
    return model


def predicted_model(hn, config: ModelConfig, *, strength: float = 1.0) -> nn.Module:
    """Our model holding the hypernet's prediction for `config` (eval mode, CPU, fp32)."""
    model = _empty_model(config) if hn.config.anchored else build_model(config, seed=0)
    hn.apply(model, strength=strength)  # anchored: every parameter is overwritten (W0 included)
    return model.eval()


def _image_stats(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The normalisation of the data the hypernet was meta-trained on (for preprocessor_config.json), if loadable."""
    from nas.data import load_dataset
    from nas.hf_layout import image_stats

    meta_doc = meta.get("meta") if isinstance(meta.get("meta"), Mapping) else meta
    name = meta_doc.get("data")
    if not name:
        return None
    try:
        ds = load_dataset(name, **(meta_doc.get("data_options") or {}))
    except (FileNotFoundError, ConfigError, ValueError):
        return None
    return image_stats(ds)


def predict_export(request: PredictRequest, *, progress: bool = True,
                   timings: dict[str, float] | None = None) -> Path:
    """Run `request`: load the hypernet, predict, write the export directory; returns its path.

    `timings` (a dict, e.g. for bench/predict_cost.py) receives the wall seconds of each stage:
    load (hypernet checkpoint), predict (the model holding the prediction), stats (ViT data
    normalisation), write (the export directory: HF layout, safetensors file, hashes)."""
    from tqdm import tqdm

    from nas.export import export_model

    timings = {} if timings is None else timings
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now

    with tqdm(total=4, desc="predict", unit="step", disable=not progress) as bar:
        bar.set_postfix_str("load hypernet")
        hn, path, meta = load_hypernet(request.space, request.checkpoint)
        hn_variant = hn.config.variant
        bar.update()
        lap("load")
        config, notes = resolve_config(request, hn.config.space_signature)
        bar.set_postfix_str("predict")
        model = predicted_model(hn, config, strength=request.strength)
        del hn
        bar.update()
        lap("predict")
        bar.set_postfix_str("data stats")
        stats = _image_stats(meta) if isinstance(config, ViTConfig) else None
        bar.update()
        lap("stats")
        bar.set_postfix_str("write")
        name = request.preset if request.preset in PRESETS else config.space
        out = Path(request.out or Path("exports") / f"predicted-{name}")
        meta_doc = meta.get("meta") if isinstance(meta.get("meta"), Mapping) else meta
        provenance = {
            "source": "hypernet_prediction",
            "hypernet": {"checkpoint": path.name, "sha256": sha256_file(path), "variant": hn_variant},
            "strength": request.strength,
            "preset": request.preset,
            "space_notes": notes,
            "data": {"name": meta_doc.get("data"), **(meta_doc.get("data_options") or {})},
        }
        out = export_model(model, out, provenance=provenance, overwrite=request.overwrite, image_stats=stats,
                           consume=True)
        bar.update()
        lap("write")
    return out


def predicted_hf_model(hf_config, checkpoint: str | os.PathLike | None = None, *, strength: float = 1.0):
    """A `transformers` model (GPT2LMHeadModel / ViTForImageClassification) holding the hypernet's prediction
    for a Hugging Face `GPT2Config` / `ViTConfig`. `checkpoint`: a LoGAH checkpoint path, None = the shipped one.

    The config must lie in the hypernet's space (GPT-2: its vocab_size and n_positions; ViT: image_size,
    num_channels, num_labels), else ConfigError naming the field. The model is loaded the way users load an
    export (`from_pretrained` on a temporary export), so it is exactly what `logah-nas predict` writes.
    """
    from nas.export import _config_from_json

    doc = hf_config.to_dict()
    space = {"gpt2": "gpt2", "vit": "vit"}.get(doc.get("model_type"))
    if space is None:
        raise ConfigError("model_type", doc.get("model_type"), "'gpt2' (GPT2Config) or 'vit' (ViTConfig)")
    config = _config_from_json(doc, Path(f"<{type(hf_config).__name__}>"))
    hn, _, _ = load_hypernet(space, checkpoint)
    signature = hn.config.space_signature
    for key in SPACE_FIELDS[space]:
        if getattr(config, key) != signature[key]:
            raise ConfigError(key, getattr(config, key), f"{signature[key]}: the hypernet checkpoint predicts "
                                                         f"for {key}={signature[key]}")
    model = predicted_model(hn, config, strength=strength)
    del hn
    from transformers import AutoModelForCausalLM, AutoModelForImageClassification

    from nas.export import export_model

    auto = AutoModelForCausalLM if space == "gpt2" else AutoModelForImageClassification
    with tempfile.TemporaryDirectory(prefix="logah-predict-") as tmp:
        out = export_model(model, Path(tmp) / "model", provenance={"source": "hypernet_prediction"},
                           tokenizer="none" if space == "gpt2" else None, consume=True)
        del model
        hf = auto.from_pretrained(out, config=hf_config)
    return hf.eval()


def generate_greedy(model: nn.Module, ids: torch.Tensor, max_new_tokens: int, *,
                    eos_token_id: int | None = None) -> torch.Tensor:
    """Greedy decoding with our GPT-2: [B, T] -> [B, T + n]. The window slides over the last `context`
    tokens, so generation past the context is cut cleanly instead of overflowing the position table."""
    context = model.config.context
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits, _ = model(ids[:, -context:])
            nxt = logits[:, -1].argmax(dim=-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
            if eos_token_id is not None and bool((nxt == eos_token_id).all()):
                break
    return ids


__all__ = ["PRESETS", "PredictRequest", "generate_greedy", "load_hypernet", "parse_predict_args",
           "predict_export", "predicted_hf_model", "predicted_model", "resolve_config"]
