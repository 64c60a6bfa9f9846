"""Export a trained model as a self-contained directory people can load without our code.

Layout of an export directory::

    model.safetensors   weights only (never pickle); metadata {"format": "pt"}
    config.json         GPT-2: a Hugging Face GPT2Config, so transformers.GPT2LMHeadModel
                        .from_pretrained(dir) works; ViT: our own format. Both carry
                        {"logah_nas": {"space", "config"}} so `load_exported` rebuilds our model.
    provenance.json     what produced the weights (study, trial, hypernet, seed, data), with
                        credentials masked, plus the sha256 of model.safetensors.

The directory appears in one `os.rename` of a fully written sibling temp directory, so a
reader (or a crash) never sees half an export.
"""
from __future__ import annotations

import datetime as _dt
import enum
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from search_spaces import GPT2, GPT2Config, ModelConfig, ViT, build_model, config_from_dict

from search_spaces.files import atomic_write_bytes, atomic_write_text, fsync_dir, sha256_file
from .secrets import mask_secrets

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
PROVENANCE_NAME = "provenance.json"
EXPORT_FILES = (WEIGHTS_NAME, CONFIG_NAME, PROVENANCE_NAME)
FORMAT_VERSION = 1
PROVENANCE_KEY = "logah_nas_export"  # our block inside provenance.json; reserved for callers

try:  # the installed distribution, as recorded in every export
    _LOGAH_NAS_VERSION = version("logah-nas")
except PackageNotFoundError:  # running from a source tree that was never installed
    _LOGAH_NAS_VERSION = "unknown"

_CONV1D_MODULES = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # HF Conv1D: weight is [in, out]


# ---------------------------------------------------------------------------------------------
# GPT-2 <-> Hugging Face parameter mapping
# ---------------------------------------------------------------------------------------------


def _hf_name(name: str) -> str:
    """Our GPT-2 parameter name -> the Hugging Face GPT2LMHeadModel name."""
    if name.startswith("blocks."):
        return "transformer.h." + name.removeprefix("blocks.")
    if name == "lm_head.weight":
        return name
    return "transformer." + name  # wte, wpe, ln_f


def _is_conv1d_weight(name: str) -> bool:
    return name.endswith(".weight") and name.removesuffix(".weight").endswith(_CONV1D_MODULES)


def state_dict_to_hf_gpt2(model: GPT2) -> dict[str, torch.Tensor]:
    """Our GPT-2 parameters under Hugging Face names and layouts (detached, on the model's device).

    HF stores Linear layers as `Conv1D` with weight [in, out], the transpose of ours. A tied
    `lm_head.weight` is left out, as HF does: it is `transformer.wte.weight`.
    """
    if not isinstance(model, GPT2):
        raise TypeError(f"expected a search_spaces.GPT2 model, got {type(model).__name__}")
    out = {}
    for name, p in model.named_parameters():  # a tied lm_head is yielded once, as wte.weight
        t = p.detach()
        out[_hf_name(name)] = t.t().contiguous() if _is_conv1d_weight(name) else t
    return out


def hf_gpt2_to_state_dict(tensors: Mapping[str, torch.Tensor], config: GPT2Config) -> dict[str, torch.Tensor]:
    """Inverse of `state_dict_to_hf_gpt2`: a state dict that `GPT2(config).load_state_dict` accepts.

    Strict: a missing or unexpected tensor or a wrong shape raises ValueError naming the key.
    """
    with torch.device("meta"):  # shapes only: no memory, no init cost
        reference = GPT2(config)
    _check_tensors(tensors, {k: v.shape for k, v in state_dict_to_hf_gpt2(reference).items()}, "GPT-2 weights")
    state = {}
    for name, _ in reference.named_parameters():
        t = tensors[_hf_name(name)]
        state[name] = t.t().contiguous() if _is_conv1d_weight(name) else t
    if config.tied_embeddings:
        state["lm_head.weight"] = state["wte.weight"]  # state_dict() lists the shared tensor under both names
    return state


def _check_tensors(tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], what: str) -> None:
    missing = [k for k in expected if k not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"{what}: missing tensor {missing[0]!r}{more}; the config needs {len(expected)} tensors")
    extra = sorted(k for k in tensors if k not in expected)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ValueError(f"{what}: unexpected tensor {extra[0]!r}{more} that the config does not have")
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != tuple(shape):
            raise ValueError(f"{what}: tensor {k!r} has shape {tuple(tensors[k].shape)}, the config needs {tuple(shape)}")


# ---------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------


def _hf_gpt2_config(c: GPT2Config, dtype: torch.dtype) -> dict[str, Any]:
    """A Hugging Face GPT2Config that computes exactly what our GPT2 computes."""
    special = 50256 if c.vocab_size == 50257 else c.vocab_size - 1  # <|endoftext|>; last id for other vocabs
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": c.vocab_size,
        "n_positions": c.context,
        "n_ctx": c.context,
        "n_embd": c.width,
        "n_layer": c.depth,
        "n_head": c.heads,
        "n_inner": c.mlp_hidden,
        "activation_function": "gelu_new",  # = GELU with tanh approximation
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": c.tied_embeddings,
        "use_cache": True,
        "bos_token_id": special,
        "eos_token_id": special,
        "dtype": str(dtype).removeprefix("torch."),
        "logah_nas": _logah_block(c),
    }


def _logah_block(c: ModelConfig) -> dict[str, Any]:
    return {"space": c.space, "config": c.to_dict(), "format_version": FORMAT_VERSION,
            "logah_nas_version": _LOGAH_NAS_VERSION}


def _config_from_hf_gpt2(doc: Mapping[str, Any], source: Path) -> GPT2Config:
    """Our config for a plain HF GPT-2 config.json (one saved by `save_pretrained`), if we can run it."""
    required = {"activation_function": ("gelu_new", "gelu_pytorch_tanh"), "scale_attn_weights": (True,),
                "scale_attn_by_inverse_layer_idx": (False,), "reorder_and_upcast_attn": (False,),
                "add_cross_attention": (False,), "layer_norm_epsilon": (1e-5,)}
    for key, allowed in required.items():
        if key in doc and doc[key] not in allowed:
            raise ValueError(f"{source}: {key}={doc[key]!r} is not supported; allowed {list(allowed)}")
    try:
        width = int(doc["n_embd"])
        inner = int(doc.get("n_inner") or 4 * width)
        config = GPT2Config(vocab_size=doc["vocab_size"], context=doc["n_positions"], depth=doc["n_layer"],
                          width=width, heads=doc["n_head"], mlp_ratio=inner / width,
                          tied_embeddings=bool(doc.get("tie_word_embeddings", True)),
                          dropout=float(doc.get("resid_pdrop", 0.0)))
    except KeyError as e:
        raise ValueError(f"{source}: GPT-2 config is missing the key {e.args[0]!r}") from None
    if config.mlp_hidden != inner:
        raise ValueError(f"{source}: n_inner={inner} is not expressible as a mlp_ratio of n_embd={width}")
    return config


def _config_from_json(doc: Any, source: Path) -> ModelConfig:
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    block = doc.get("logah_nas")
    if block is None:
        if doc.get("model_type") == "gpt2":
            return _config_from_hf_gpt2(doc, source)
        raise ValueError(f"{source}: has neither a 'logah_nas' block nor model_type 'gpt2'")
    if not isinstance(block, dict) or not isinstance(block.get("config"), dict):
        raise ValueError(f"{source}: 'logah_nas' must be an object with a 'config' object")
    fmt = block.get("format_version", FORMAT_VERSION)
    if not isinstance(fmt, int) or fmt > FORMAT_VERSION:
        raise ValueError(f"{source}: export format_version={fmt!r} is newer than this logah-nas "
                         f"({_LOGAH_NAS_VERSION}) reads (<= {FORMAT_VERSION}); upgrade logah-nas")
    config = config_from_dict(block["config"])
    if block.get("space", config.space) != config.space:
        raise ValueError(f"{source}: logah_nas.space={block['space']!r} disagrees with its config ({config.space!r})")
    return config


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------


def _export_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(model, GPT2):
        tensors = state_dict_to_hf_gpt2(model)
    elif isinstance(model, ViT):
        tensors = {k: v.detach() for k, v in model.state_dict().items()}
    else:
        raise TypeError(f"can only export search_spaces.GPT2 or ViT models, got {type(model).__name__}")
    return {k: v.cpu().contiguous() for k, v in tensors.items()}


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (_dt.datetime, _dt.date)):
        return o.isoformat()
    if isinstance(o, enum.Enum):
        return o.value
    if hasattr(o, "item") and getattr(o, "ndim", None) == 0:  # numpy / torch scalars
        return o.item()
    raise TypeError(f"provenance value of type {type(o).__name__} is not JSON serialisable: {o!r}")


def _dump(doc: Any) -> str:
    return json.dumps(doc, indent=2, default=_json_default) + "\n"


def export_model(model: nn.Module, out_dir: str | os.PathLike, *, provenance: Mapping[str, Any],
                 overwrite: bool = False) -> Path:
    """Write `model` to `out_dir` (model.safetensors, config.json, provenance.json) and return its path.

    The files are written into a temp directory next to `out_dir` that is renamed into place
    only when complete. An existing non-empty `out_dir` is replaced only with `overwrite=True`,
    and only if it holds nothing but export files, so a wrong path cannot delete user data.
    GPT-2 exports load with `transformers.GPT2LMHeadModel.from_pretrained(out_dir)`.
    """
    if not isinstance(provenance, Mapping):
        raise TypeError(f"provenance must be a mapping, got {type(provenance).__name__}")
    if PROVENANCE_KEY in provenance:
        raise ValueError(f"provenance key {PROVENANCE_KEY!r} is reserved for export_model")
    out = Path(out_dir)
    _check_target(out, overwrite)
    tensors = _export_tensors(model)
    config: ModelConfig = model.config
    dtype = next(iter(tensors.values())).dtype
    if isinstance(model, GPT2):
        config_doc = _hf_gpt2_config(config, dtype)
    else:
        config_doc = {"model_type": f"logah-{config.space}", "logah_nas": _logah_block(config)}
    weights = save(tensors, metadata={"format": "pt"})
    provenance_doc = {**mask_secrets(dict(provenance)), PROVENANCE_KEY: {
        "format_version": FORMAT_VERSION,
        "logah_nas_version": _LOGAH_NAS_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "space": config.space,
        "n_params": sum(p.numel() for p in model.parameters()),
        "dtype": str(dtype).removeprefix("torch."),
        "model_sha256": hashlib.sha256(weights).hexdigest(),
    }}
    provenance_text = _dump(provenance_doc)  # fail on unserialisable values before touching the disk

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        atomic_write_bytes(tmp / WEIGHTS_NAME, weights)
        atomic_write_text(tmp / CONFIG_NAME, _dump(config_doc))
        atomic_write_text(tmp / PROVENANCE_NAME, provenance_text)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700: exports are meant to be shared
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_target(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(f"{out} is not empty ({', '.join(entries)}); pass overwrite=True to replace the export")
    foreign = [e for e in entries if e not in EXPORT_FILES]
    if foreign:
        raise FileExistsError(f"{out} holds files that are not part of an export ({', '.join(foreign)}); "
                              "refusing to replace it even with overwrite=True")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the complete `tmp` over `out`. A non-empty `out` is first renamed aside, then deleted."""
    if not out.exists() or not any(out.iterdir()):
        os.replace(tmp, out)  # POSIX rename replaces an empty directory atomically
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old)  # `old` is empty, so this is allowed
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)  # put the previous export back
            raise
        shutil.rmtree(old, ignore_errors=True)
    fsync_dir(out.parent)


# ---------------------------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: an export directory needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _verify_checksum(directory: Path, weights: Path) -> None:
    """Catch truncated or swapped weights before parsing them, when provenance recorded a hash."""
    path = directory / PROVENANCE_NAME
    if not path.exists():
        return
    doc = _read_json(path)
    expected = doc.get(PROVENANCE_KEY, {}).get("model_sha256") if isinstance(doc, dict) else None
    if expected is None:
        return
    actual = sha256_file(weights)
    if actual != expected:
        raise ValueError(f"{weights} is corrupt or truncated: sha256 {actual} differs from {expected} "
                         f"recorded in {path} ({weights.stat().st_size} bytes on disk)")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: an export directory needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        with safe_open(path, framework="pt") as f:
            fmt = (f.metadata() or {}).get("format", "pt")
        if fmt != "pt":
            raise ValueError(f"{path}: safetensors format {fmt!r} is not 'pt'")
        return load_file(path)
    except SafetensorError as e:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from None


def load_exported(path: str | os.PathLike) -> tuple[nn.Module, ModelConfig]:
    """Load an export directory (ours, or a HF GPT-2 `save_pretrained` one) into our model, in eval mode.

    Reads only JSON and safetensors (never pickle). Errors: FileNotFoundError naming the missing
    file; ValueError for corrupt JSON, a weights file that fails its recorded sha256 or does not
    parse, or missing/unexpected/mis-shaped tensors (naming the key).
    """
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"export directory {directory} not found")
    config = _config_from_json(_read_json(directory / CONFIG_NAME), directory / CONFIG_NAME)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: an export directory needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    _verify_checksum(directory, weights)
    tensors = _read_weights(weights)

    model = build_model(config)
    if isinstance(config, GPT2Config):
        try:
            state = hf_gpt2_to_state_dict(tensors, config)
        except ValueError as e:
            raise ValueError(f"{weights}: {e}") from None
    else:
        _check_tensors(tensors, {k: v.shape for k, v in model.state_dict().items()}, f"{weights}: ViT weights")
        state = tensors
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) == 1 and (dtype := dtypes.pop()).is_floating_point:
        model.to(dtype)  # keep the exported precision: a bf16 export round-trips bit-exactly
    model.load_state_dict(state, strict=True)
    return model.eval(), config


__all__ = [
    "CONFIG_NAME", "EXPORT_FILES", "PROVENANCE_NAME", "WEIGHTS_NAME",
    "export_model", "load_exported", "state_dict_to_hf_gpt2", "hf_gpt2_to_state_dict",
]
