"""Export a trained model as a self-contained directory people can load without our code.

Layout of an export directory::

    model.safetensors   weights only (never pickle); metadata {"format": "pt"}
    config.json         a Hugging Face config (GPT-2: GPT2Config; ViT with class token and learned
                        positions: ViTConfig, weights in ViTForImageClassification names), so
                        transformers' Auto classes load it; other ViTs: our own format
                        (model_type "logah-vit"). All carry {"logah_nas": {"space", "config"}} so
                        `load_exported` rebuilds our model.
    tokenizer.json ...  GPT-2 on byte data: a byte-level tokenizer (id = byte value); on
                        tokenizer="gpt2" data: GPT-2 BPE from the local HF cache.
    generation_config.json  GPT-2: greedy, max_length = n_positions, so default generation (also the
                        pipeline's) stops at the context instead of overflowing the position table.
    preprocessor_config.json  HF ViT when the data set's normalisation is known (ViTImageProcessor).
    README.md           the model card (what, metrics, hypernet, data, how to load).
    provenance.json     what produced the weights (study, trial, hypernet, seed, data), with
                        credentials masked, plus the sha256 of model.safetensors.

The directory appears in one `os.rename` of a fully written sibling temp directory, so a
reader (or a crash) never sees half an export.
"""
from __future__ import annotations

import datetime as _dt
import enum
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
from safetensors.torch import load_file, save_file
from torch import nn

from search_spaces import ConfigError, GPT2, GPT2Config, ModelConfig, ViT, build_model, config_from_dict

from search_spaces.files import atomic_write_text, fsync_dir, sha256_file
from . import hf_layout
from .model_card import render_model_card
from .secrets import mask_secrets

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
PROVENANCE_NAME = "provenance.json"
CARD_NAME = "README.md"
# every file an export may hold (overwrite refuses directories with anything else)
EXPORT_FILES = (WEIGHTS_NAME, CONFIG_NAME, PROVENANCE_NAME, CARD_NAME, "generation_config.json",
                "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")
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
        if doc.get("model_type") == "vit":
            return hf_layout.vit_config_from_hf(doc, str(source))
        raise ValueError(f"{source}: has neither a 'logah_nas' block nor model_type 'gpt2' or 'vit'")
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


def _consume_gpt2(model: GPT2) -> dict[str, torch.Tensor]:
    """`state_dict_to_hf_gpt2` that frees each transposed parameter as soon as its copy exists, so a
    disposable model (a fresh prediction of GPT-2-L, 3 GB) never exists twice. The model is unusable after."""
    out = {}
    for name, p in list(model.named_parameters()):
        if _is_conv1d_weight(name):
            out[_hf_name(name)] = p.detach().t().contiguous()
            p.data = torch.empty(0, dtype=p.dtype, device=p.device)
        else:
            out[_hf_name(name)] = p.detach()
    return out


def _export_tensors(model: nn.Module, consume: bool = False) -> dict[str, torch.Tensor]:
    if isinstance(model, GPT2) and consume:
        tensors = _consume_gpt2(model)
    elif isinstance(model, GPT2):
        tensors = state_dict_to_hf_gpt2(model)
    elif isinstance(model, ViT) and hf_layout.vit_hf_representable(model.config) is None:
        tensors = hf_layout.state_dict_to_hf_vit(model)
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


def _data_doc(provenance: Mapping[str, Any]) -> Mapping[str, Any]:
    data = provenance.get("data")
    return data if isinstance(data, Mapping) else {"name": data}


def _tokenizer_kind(config: GPT2Config, provenance: Mapping[str, Any], tokenizer: str | None) -> str:
    """"bytes" (vocab 256, id = byte), "gpt2" (BPE) or "none", from the data the model was trained on."""
    if tokenizer is None:
        data = _data_doc(provenance)
        options = data.get("options") if isinstance(data.get("options"), Mapping) else {}
        tokenizer = data.get("tokenizer") or options.get("tokenizer")
        if tokenizer is None or (tokenizer == "bytes" and config.vocab_size != 256):
            tokenizer = "bytes" if config.vocab_size == 256 else "none"
    allowed = {"bytes": 256, "gpt2": 50257}
    if tokenizer in allowed and config.vocab_size != allowed[tokenizer]:
        raise ConfigError("tokenizer", tokenizer, f"a tokenizer for vocab_size={config.vocab_size}: "
                                                  f"'bytes' needs 256, 'gpt2' needs 50257, else 'none'")
    if tokenizer not in (*allowed, "none"):
        raise ConfigError("tokenizer", tokenizer, "'bytes', 'gpt2' or 'none'")
    return tokenizer


def _gpt2_side_files(config: GPT2Config, kind: str, eos: int) -> dict[str, str]:
    files = {"generation_config.json": _dump(hf_layout.generation_config(config.context, eos))}
    if kind == "bytes":
        files.update(hf_layout.byte_tokenizer_files(config.context))
    elif kind == "gpt2":
        files.update(hf_layout.gpt2_bpe_tokenizer_files(config.context))
    return files


def _check_image_stats(stats: Mapping[str, Any], config: ModelConfig) -> None:
    for key in ("scale", "mean", "std"):
        if key not in stats:
            raise ConfigError("image_stats", sorted(stats), "a mapping with 'scale', 'mean' and 'std'")
    for key in ("mean", "std"):
        if len(stats[key]) != config.channels:
            raise ConfigError(f"image_stats.{key}", list(stats[key]), f"{config.channels} values (one per channel)")


def export_model(model: nn.Module, out_dir: str | os.PathLike, *, provenance: Mapping[str, Any],
                 overwrite: bool = False, tokenizer: str | None = None,
                 image_stats: Mapping[str, Any] | None = None, consume: bool = False) -> Path:
    """Write `model` to `out_dir` (weights, config, provenance, model card, HF side files) and return its path.

    The files are written into a temp directory next to `out_dir` that is renamed into place
    only when complete. An existing non-empty `out_dir` is replaced only with `overwrite=True`,
    and only if it holds nothing but export files, so a wrong path cannot delete user data.
    GPT-2 exports load with `transformers.pipeline("text-generation", out_dir)` (with a tokenizer:
    `tokenizer` "bytes" | "gpt2" | "none", None = from provenance["data"]["tokenizer"] / the vocab);
    representable ViTs with `AutoModelForImageClassification`, and with `AutoImageProcessor` when
    `image_stats` ({"scale", "mean", "std", optional "class_names"}: the data set's normalisation) is given.
    `consume=True`: the model is disposable; its parameters are freed while converting (peak memory ~1x).
    """
    if not isinstance(provenance, Mapping):
        raise TypeError(f"provenance must be a mapping, got {type(provenance).__name__}")
    if PROVENANCE_KEY in provenance:
        raise ValueError(f"provenance key {PROVENANCE_KEY!r} is reserved for export_model")
    out = Path(out_dir)
    _check_target(out, overwrite)
    n_params = sum(p.numel() for p in model.parameters())
    tensors = _export_tensors(model, consume)
    config: ModelConfig = model.config
    dtype = next(iter(tensors.values())).dtype
    side: dict[str, str] = {}
    notes: list[str] = []
    hf = True
    if isinstance(model, GPT2):
        config_doc = _hf_gpt2_config(config, dtype)
        kind = _tokenizer_kind(config, provenance, tokenizer)
        side = _gpt2_side_files(config, kind, config_doc["eos_token_id"])
        if kind == "bytes":
            notes.append("Tokenizer: byte-level, token id = byte value (vocab 256), the ids the model was trained on. "
                         "All 256 ids are bytes; id 255 (a byte that never occurs in UTF-8 text) is the eos id.")
    elif (why := hf_layout.vit_hf_representable(config)) is None:
        class_names = list(image_stats.get("class_names") or []) if image_stats else None
        config_doc = {**hf_layout.hf_vit_config(config, dtype, class_names), "logah_nas": _logah_block(config)}
        if config.dropout > 0:
            notes.append(f"dropout={config.dropout}: HF ViT also drops out the embeddings, ours does not; "
                         "inference (eval mode) is identical, fine-tuning in transformers differs slightly.")
        if image_stats is not None:
            _check_image_stats(image_stats, config)
            side["preprocessor_config.json"] = _dump(hf_layout.vit_image_processor_config(
                config, scale=image_stats["scale"], mean=list(image_stats["mean"]), std=list(image_stats["std"])))
        else:
            notes.append("No preprocessor_config.json: the data set's normalisation was not known at export time.")
    else:
        hf = False
        config_doc = {"model_type": f"logah-{config.space}", "logah_nas": _logah_block(config)}
        notes.append(f"Not exported in Hugging Face ViT layout: {why}.")
    _dump(provenance)  # fail on unserialisable values before touching the disk
    provenance_doc = {**mask_secrets(dict(provenance)), PROVENANCE_KEY: {
        "format_version": FORMAT_VERSION,
        "logah_nas_version": _LOGAH_NAS_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "space": config.space,
        "n_params": n_params,
        "dtype": str(dtype).removeprefix("torch."),
        "hf_layout": hf,
        "model_sha256": None,  # set once the weights are on disk
    }}
    card = render_model_card(config, provenance_doc, n_params=n_params, hf_layout=hf,
                             has_tokenizer="tokenizer.json" in side or "vocab.json" in side,
                             has_processor="preprocessor_config.json" in side, notes=notes)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        provenance_doc[PROVENANCE_KEY]["model_sha256"] = _write_weights(tmp / WEIGHTS_NAME, tensors)
        del tensors  # transposed copies (GPT-2 Conv1D) are freed before the small files are written
        atomic_write_text(tmp / CONFIG_NAME, _dump(config_doc))
        atomic_write_text(tmp / PROVENANCE_NAME, _dump(provenance_doc))
        atomic_write_text(tmp / CARD_NAME, card)
        for name, text in side.items():
            atomic_write_text(tmp / name, text)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700: exports are meant to be shared
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_weights(path: Path, tensors: dict[str, torch.Tensor]) -> str:
    """Stream the safetensors file to disk (no in-memory copy of a 3 GB model), fsync it, return its sha256.
    `path` is inside the export's temp directory, which is renamed into place only when complete."""
    save_file(tensors, str(path), metadata={"format": "pt"})
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    os.chmod(path, 0o644)
    return sha256_file(path)


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
    """Load an export directory into our model, in eval mode: ours (GPT-2 / HF-layout ViT / logah-vit), a HF
    GPT-2 `save_pretrained` one, or a HF ViT config.json with classic (transformers 4.x) ViT weight names.

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
    elif hf_layout.is_hf_vit_layout(tensors):
        _check_tensors(tensors, hf_layout.expected_hf_vit_shapes(config), f"{weights}: HF ViT weights")
        state = hf_layout.hf_vit_to_state_dict(tensors, config)
    else:
        _check_tensors(tensors, {k: v.shape for k, v in model.state_dict().items()}, f"{weights}: ViT weights")
        state = tensors
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) == 1 and (dtype := dtypes.pop()).is_floating_point:
        model.to(dtype)  # keep the exported precision: a bf16 export round-trips bit-exactly
    model.load_state_dict(state, strict=True)
    return model.eval(), config


__all__ = [
    "CARD_NAME", "CONFIG_NAME", "EXPORT_FILES", "PROVENANCE_NAME", "WEIGHTS_NAME",
    "export_model", "load_exported", "state_dict_to_hf_gpt2", "hf_gpt2_to_state_dict",
]
