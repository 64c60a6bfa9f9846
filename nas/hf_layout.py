"""The Hugging Face side of an export: ViT weights/config, tokenizers, image processor config.

Kept apart from `nas.export` (directory layout, atomicity, loading) so that the mapping to
`transformers`' conventions lives in one place. Nothing here imports `transformers`: an export
is written with torch + `tokenizers` only, and read by whatever transformers version the user has.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from search_spaces import ViT, ViTConfig

# ---------------------------------------------------------------------------------------------
# ViT <-> ViTForImageClassification
# ---------------------------------------------------------------------------------------------

# The classic (transformers 4.x) names: transformers 5 renames them on load (its "ViTModel"
# conversion mapping), so one file loads in both major versions.
_VIT_BLOCK = {"ln_1": "layernorm_before", "ln_2": "layernorm_after", "attn.c_proj": "attention.output.dense",
              "mlp.c_fc": "intermediate.dense", "mlp.c_proj": "output.dense"}
_QKV = ("query", "key", "value")
VIT_LAYER_NORM_EPS = 1e-6  # search_spaces.vit: every LayerNorm of our ViT


def vit_hf_representable(c: ViTConfig) -> str | None:
    """None if HF `ViTForImageClassification` computes exactly what our ViT computes, else why not.

    HF ViT always prepends a class token, pools it, and adds a learned position table.
    """
    if not c.class_token:
        return "class_token=False (mean pooling): HF ViTForImageClassification always pools a class token"
    if not c.learned_pos_embedding:
        return ("learned_pos_embedding=False (fixed 2-D sin-cos table): HF ViT stores a learned "
                "position_embeddings parameter")
    return None


def state_dict_to_hf_vit(model: ViT) -> dict[str, torch.Tensor]:
    """Our ViT parameters under `ViTForImageClassification` names and layouts (detached).

    patch_embed is a Linear on patches flattened as (p1 p2 c): its weight [C, p*p*c] becomes the
    Conv2d weight [C, c, p1, p2]; the fused c_attn [3C, C] splits into query/key/value (rows q|k|v).
    """
    c = model.config
    if (why := vit_hf_representable(c)) is not None:
        raise ValueError(f"ViT config not expressible as HF ViT: {why}")
    p, width = c.patch_size, c.width
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    out = {
        "vit.embeddings.cls_token": sd["cls_token"],
        "vit.embeddings.position_embeddings": sd["pos_embed"],
        "vit.embeddings.patch_embeddings.projection.weight":
            sd["patch_embed.weight"].reshape(width, p, p, c.channels).permute(0, 3, 1, 2),
        "vit.embeddings.patch_embeddings.projection.bias": sd["patch_embed.bias"],
        "vit.layernorm.weight": sd["ln_f.weight"], "vit.layernorm.bias": sd["ln_f.bias"],
        "classifier.weight": sd["head.weight"], "classifier.bias": sd["head.bias"],
    }
    for i in range(c.depth):
        src, dst = f"blocks.{i}.", f"vit.encoder.layer.{i}."
        for ours, theirs in _VIT_BLOCK.items():
            for kind in ("weight", "bias"):
                out[f"{dst}{theirs}.{kind}"] = sd[f"{src}{ours}.{kind}"]
        for kind in ("weight", "bias"):
            for name, part in zip(_QKV, sd[f"{src}attn.c_attn.{kind}"].chunk(3, dim=0)):
                out[f"{dst}attention.attention.{name}.{kind}"] = part
    return {k: v.contiguous() for k, v in out.items()}


def hf_vit_to_state_dict(tensors: Mapping[str, torch.Tensor], c: ViTConfig) -> dict[str, torch.Tensor]:
    """Inverse of `state_dict_to_hf_vit`; the caller checks names and shapes first (`expected_hf_vit_shapes`)."""
    p = c.patch_size
    conv = tensors["vit.embeddings.patch_embeddings.projection.weight"]
    state = {
        "cls_token": tensors["vit.embeddings.cls_token"],
        "pos_embed": tensors["vit.embeddings.position_embeddings"],
        "patch_embed.weight": conv.permute(0, 2, 3, 1).reshape(c.width, p * p * c.channels).contiguous(),
        "patch_embed.bias": tensors["vit.embeddings.patch_embeddings.projection.bias"],
        "ln_f.weight": tensors["vit.layernorm.weight"], "ln_f.bias": tensors["vit.layernorm.bias"],
        "head.weight": tensors["classifier.weight"], "head.bias": tensors["classifier.bias"],
    }
    for i in range(c.depth):
        src, dst = f"vit.encoder.layer.{i}.", f"blocks.{i}."
        for ours, theirs in _VIT_BLOCK.items():
            for kind in ("weight", "bias"):
                state[f"{dst}{ours}.{kind}"] = tensors[f"{src}{theirs}.{kind}"]
        for kind in ("weight", "bias"):
            state[f"{dst}attn.c_attn.{kind}"] = torch.cat(
                [tensors[f"{src}attention.attention.{n}.{kind}"] for n in _QKV], dim=0)
    return state


def expected_hf_vit_shapes(c: ViTConfig) -> dict[str, torch.Size]:
    with torch.device("meta"):  # shapes only
        return {k: v.shape for k, v in state_dict_to_hf_vit(ViT(c)).items()}


def is_hf_vit_layout(tensors: Mapping[str, Any]) -> bool:
    return "vit.embeddings.cls_token" in tensors


def vit_config_from_hf(doc: Mapping[str, Any], source: str) -> ViTConfig:
    """Our config for a Hugging Face ViT config.json / `ViTConfig.to_dict()`, if our ViT computes the same."""
    required = {"hidden_act": ("gelu",), "layer_norm_eps": (VIT_LAYER_NORM_EPS,), "qkv_bias": (True,)}
    for key, allowed in required.items():
        if key in doc and doc[key] not in allowed:
            raise ValueError(f"{source}: {key}={doc[key]!r} is not supported; allowed {list(allowed)}")
    try:
        width = int(doc["hidden_size"])
        labels = doc.get("id2label") or {}
        num_classes = int(doc.get("num_labels") or len(labels) or 2)
        image_size, patch_size = doc["image_size"], doc["patch_size"]
        if isinstance(image_size, (list, tuple)):
            if len(set(image_size)) != 1:
                raise ValueError(f"{source}: image_size={image_size} must be square")
            image_size = image_size[0]
        if isinstance(patch_size, (list, tuple)):
            if len(set(patch_size)) != 1:
                raise ValueError(f"{source}: patch_size={patch_size} must be square")
            patch_size = patch_size[0]
        config = ViTConfig(image_size=int(image_size), channels=int(doc.get("num_channels", 3)),
                           patch_size=int(patch_size), depth=int(doc["num_hidden_layers"]), width=width,
                           heads=int(doc["num_attention_heads"]),
                           mlp_ratio=int(doc.get("intermediate_size") or 4 * width) / width,
                           num_classes=num_classes, dropout=float(doc.get("hidden_dropout_prob", 0.0)))
    except KeyError as e:
        raise ValueError(f"{source}: ViT config is missing the key {e.args[0]!r}") from None
    if config.mlp_hidden != int(doc.get("intermediate_size") or 4 * width):
        raise ValueError(f"{source}: intermediate_size={doc.get('intermediate_size')} is not expressible as a "
                         f"mlp_ratio of hidden_size={width}")
    return config


def image_stats(dataset) -> dict[str, Any]:
    """An `ImageDataset`'s normalisation, as `export_model(image_stats=...)` takes it."""
    return {"scale": float(dataset.scale), "mean": [float(m) for m in dataset.mean],
            "std": [float(s) for s in dataset.std], "class_names": list(dataset.class_names or [])}


def hf_vit_config(c: ViTConfig, dtype: torch.dtype, class_names: list[str] | None = None) -> dict[str, Any]:
    """A Hugging Face ViTConfig (model_type "vit") that computes exactly what our ViT computes."""
    names = class_names if class_names and len(class_names) == c.num_classes else \
        [f"LABEL_{i}" for i in range(c.num_classes)]
    return {
        "model_type": "vit",
        "architectures": ["ViTForImageClassification"],
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "num_channels": c.channels,
        "hidden_size": c.width,
        "num_hidden_layers": c.depth,
        "num_attention_heads": c.heads,
        "intermediate_size": c.mlp_hidden,
        "hidden_act": "gelu",  # exact (erf) GELU, as our ViT's MLP (gelu_approximate="none")
        "layer_norm_eps": VIT_LAYER_NORM_EPS,
        "qkv_bias": True,
        "hidden_dropout_prob": c.dropout,
        "attention_probs_dropout_prob": c.dropout,
        "initializer_range": 0.02,
        "encoder_stride": c.patch_size,
        "id2label": {str(i): n for i, n in enumerate(names)},
        "label2id": {n: i for i, n in enumerate(names)},
        "dtype": str(dtype).removeprefix("torch."),
    }


def vit_image_processor_config(c: ViTConfig, *, scale: float, mean: list[float], std: list[float]) -> dict[str, Any]:
    """`preprocessor_config.json` for ViTImageProcessor reproducing our ImageDataset's normalisation:
    x / scale, then (x - mean) / std per channel (train-split statistics), no resizing."""
    return {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": False,
        "size": {"height": c.image_size, "width": c.image_size},
        "do_rescale": True,
        "rescale_factor": 1.0 / float(scale),
        "do_normalize": True,
        "image_mean": [float(m) for m in mean],
        "image_std": [float(s) for s in std],
    }


# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character table (what ByteLevel pre-tokenizers use)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def byte_tokenizer_json() -> str:
    """`tokenizer.json` mapping text to its UTF-8 bytes, token id = byte value (vocab 256), as our
    byte-level data sets (`nas.data._base.bytes_to_tokens`) do; decoding joins the bytes again."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))  # no merges: every byte is its own token
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok.to_str(pretty=True)


def byte_tokenizer_files(context: int) -> dict[str, str]:
    """File name -> text for the byte-level tokenizer (no special tokens: all 256 ids are bytes)."""
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": context,
              "clean_up_tokenization_spaces": False, "add_bos_token": False, "add_eos_token": False,
              "padding_side": "left"}
    return {"tokenizer.json": byte_tokenizer_json(), "tokenizer_config.json": json.dumps(config, indent=2) + "\n"}


def gpt2_bpe_tokenizer_files(context: int) -> dict[str, str]:
    """The GPT-2 BPE tokenizer from the local Hugging Face cache (no network), as file name -> text.

    FileNotFoundError when it is not cached: an export must never carry a tokenizer that does not
    match the token ids the model was trained on.
    """
    import tempfile
    from pathlib import Path

    try:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained("gpt2", local_files_only=True)
    except Exception as e:  # OSError when not cached, ImportError without transformers
        raise FileNotFoundError(
            "data.tokenizer='gpt2': the export needs the GPT-2 BPE tokenizer, which is not in the local Hugging "
            "Face cache (run `AutoTokenizer.from_pretrained('gpt2')` once with internet) "
            f"({type(e).__name__}: {e})") from None
    tok.model_max_length = context
    with tempfile.TemporaryDirectory(prefix="logah-tok-") as tmp:
        tok.save_pretrained(tmp)
        return {p.name: p.read_text(encoding="utf-8") for p in Path(tmp).iterdir() if p.is_file()}


def generation_config(context: int, eos_token_id: int | None) -> dict[str, Any]:
    """Greedy by default, `max_length` = the context (n_positions). Why: `generate` clamps only its own default
    length to `max_position_embeddings`, and the text-generation pipeline brings its own default
    (max_new_tokens=256) unless the model's generation config sets a length, which would run past the
    position table (IndexError). Cost: transformers warns that both are set when a call passes `max_new_tokens`."""
    return {"max_length": context, "do_sample": False, "eos_token_id": eos_token_id, "bos_token_id": eos_token_id,
            "pad_token_id": eos_token_id}


__all__ = ["byte_tokenizer_files", "byte_tokenizer_json", "expected_hf_vit_shapes", "generation_config",
           "gpt2_bpe_tokenizer_files", "hf_vit_config", "hf_vit_to_state_dict", "image_stats", "is_hf_vit_layout",
           "state_dict_to_hf_vit", "vit_config_from_hf", "vit_hf_representable", "vit_image_processor_config"]
