"""The `README.md` model card of an export: what the weights are, how good, how to load them.

Rendered from the same documents the export writes (config, provenance), so it never disagrees
with them. Blocks that a provenance may or may not have (val / test metrics, hypernet) are
rendered only when present.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from search_spaces import GPT2Config, ModelConfig

_METRICS = ("value", "val_loss", "val_accuracy", "val_perplexity")


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _metrics_section(prov: Mapping[str, Any]) -> list[str]:
    lines = []
    val = {k: prov[k] for k in _METRICS if prov.get(k) is not None}
    if isinstance(prov.get("metric"), Mapping):
        val.update(prov["metric"])
    elif prov.get("metric") is not None and "value" in val:
        val[str(prov["metric"])] = val.pop("value")
    if val:
        lines += ["", "## Validation metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in val.items()]
    test = prov.get("test")
    if isinstance(test, Mapping) and test:
        lines += ["", "## Test metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in test.items() if not isinstance(v, (Mapping, list))]
    return lines


def _hypernet_line(prov: Mapping[str, Any]) -> str | None:
    hn = prov.get("hypernet")
    version = prov.get("hypernet_version")
    if isinstance(hn, Mapping):
        sha = hn.get("sha256")
        what = f"checkpoint `{hn['checkpoint']}`" if hn.get("checkpoint") else f"version {hn.get('version', version)}"
        return f"- hypernet: {what}" + (f", sha256 `{sha}`" if sha else "")
    if version is not None:
        return f"- hypernet: version {version}"
    return None


def _load_section(config: ModelConfig, hf_layout: bool, has_tokenizer: bool, has_processor: bool) -> list[str]:
    lines = ["", "## How to load", ""]
    if isinstance(config, GPT2Config) and has_tokenizer:
        lines += ["```python", "from transformers import pipeline", "",
                  'generate = pipeline("text-generation", model="path/to/this/dir")',
                  'print(generate("def main(", max_new_tokens=40, do_sample=False)[0]["generated_text"])', "```"]
    elif isinstance(config, GPT2Config):
        lines += ["```python", "from transformers import GPT2LMHeadModel", "",
                  'model = GPT2LMHeadModel.from_pretrained("path/to/this/dir")', "```",
                  "", "No tokenizer is included (its vocabulary is not a byte-level or GPT-2 BPE one)."]
    elif hf_layout:
        lines += ["```python", "from transformers import AutoImageProcessor, AutoModelForImageClassification", "",
                  'model = AutoModelForImageClassification.from_pretrained("path/to/this/dir")']
        if has_processor:
            lines += ['processor = AutoImageProcessor.from_pretrained("path/to/this/dir")',
                      'logits = model(**processor(images, return_tensors="pt")).logits']
        lines += ["```"]
    else:
        lines += ["This configuration is not exactly expressible as a Hugging Face model, so the weights are in "
                  "logah-nas's own format (load them with logah-nas below)."]
    lines += ["", "With logah-nas:", "", "```python", "from nas.export import load_exported", "",
              'model, config = load_exported("path/to/this/dir")', "```"]
    return lines


def render_model_card(config: ModelConfig, provenance: Mapping[str, Any], *, n_params: int, hf_layout: bool,
                      has_tokenizer: bool, has_processor: bool, notes: list[str] = ()) -> str:
    """The README.md text of an export."""
    prov = dict(provenance)
    kind = "GPT-2 language model" if isinstance(config, GPT2Config) else "ViT image classifier"
    source = prov.get("source", "trial")
    lines = [f"# logah-nas {config.space} export", "",
             f"A {kind} from the `{config.space}` search space of logah-nas "
             "(Optuna architecture search with LoGAH hypernetwork warm starts).", "",
             f"- parameters: {n_params:,}"]
    if prov.get("study") is not None:
        lines.append(f"- study: `{prov['study']}`, trial {prov.get('trial')}")
    if source == "hypernet_prediction":
        lines.append("- weights: the hypernetwork's prediction (no training)")
    if (line := _hypernet_line(prov)) is not None:
        lines.append(line)
    if prov.get("strength") not in (None, 1.0) or prov.get("warm_strength") is not None:
        lines.append(f"- warm-start strength: {prov.get('strength', prov.get('warm_strength'))}")
    safety = prov.get("safety")
    if isinstance(safety, Mapping) and safety.get("outcome") in ("blended", "replaced"):
        lines.append(f"- safety net: the prediction scored worse than its init on val batches and was "
                     f"{safety['outcome']} (trained from strength {safety.get('strength')})")
    for note in prov.get("space_notes") or ():
        lines.append(f"- fixed by the hypernet's space: {note}")
    data = prov.get("data")
    if data is not None:
        lines.append(f"- data: `{json.dumps(data, sort_keys=True) if isinstance(data, Mapping) else data}`")
    if isinstance(config, GPT2Config):
        lines.append(f"- context length (n_positions): {config.context} tokens. Default generation stops there "
                     "(generation_config.json sets max_length to it); with an explicit `max_new_tokens` or "
                     "`max_length` that would run past it, the position table overflows (IndexError): pass "
                     '`handle_long_generation="hole"` to the pipeline, which cuts the prompt from the left so '
                     "prompt + new tokens fit")
    lines += ["", "## Configuration", "", "```json", json.dumps(config.to_dict(), indent=2), "```"]
    lines += _metrics_section(prov)
    lines += _load_section(config, hf_layout, has_tokenizer, has_processor)
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", "Provenance (study, trial, hypernet, seed, data; checksums) is in `provenance.json`.", ""]
    return "\n".join(lines)


__all__ = ["render_model_card"]
