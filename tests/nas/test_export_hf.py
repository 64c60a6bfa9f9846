"""Exports in the tools users already have: transformers pipelines, Auto classes, image processors,
byte-level tokenizers, model cards."""
from __future__ import annotations

import json

import pytest
import torch

from nas import hf_layout
from nas.export import export_model, load_exported
from nas.predict import generate_greedy
from search_spaces import GPT2, ViT, GPT2Config, ViTConfig

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")


def _perturbed(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def _vit(**kw) -> ViT:
    cfg = dict(image_size=8, channels=3, patch_size=2, depth=2, width=16, heads=2, num_classes=3)
    return _perturbed(ViT(ViTConfig(**{**cfg, **kw})))


STATS = {"scale": 255.0, "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.6, 0.7], "class_names": ["cat", "dog", "eel"]}


# --- ViT ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("patch_size,channels,mlp_ratio", [(2, 3, 4.0), (4, 1, 2.0)])
def test_vit_auto_model_gives_our_logits(tmp_path, patch_size, channels, mlp_ratio):
    model = _vit(patch_size=patch_size, channels=channels, mlp_ratio=mlp_ratio)
    out = export_model(model, tmp_path / "v", provenance={})
    hf, info = transformers.AutoModelForImageClassification.from_pretrained(out, output_loading_info=True)
    assert {k: list(v) for k, v in info.items() if v} == {}  # no missing/unexpected/mismatched keys
    assert type(hf).__name__ == "ViTForImageClassification"
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["model_type"], cfg["hidden_act"], cfg["layer_norm_eps"], cfg["qkv_bias"]) == ("vit", "gelu", 1e-6, True)
    assert (cfg["image_size"], cfg["patch_size"], cfg["num_channels"]) == (8, patch_size, channels)
    x = torch.randn(4, channels, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf.eval()(pixel_values=x).logits, model(x)[0], atol=1e-5, rtol=0)


def test_vit_patch_embedding_is_the_conv_of_our_linear():
    model = _vit(patch_size=4)
    conv = torch.nn.Conv2d(3, 16, 4, stride=4)
    tensors = hf_layout.state_dict_to_hf_vit(model)
    conv.load_state_dict({"weight": tensors["vit.embeddings.patch_embeddings.projection.weight"],
                          "bias": tensors["vit.embeddings.patch_embeddings.projection.bias"]})
    x = torch.randn(2, 3, 8, 8)
    from einops import rearrange
    ours = model.patch_embed(rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=4, p2=4))
    torch.testing.assert_close(conv(x).flatten(2).transpose(1, 2), ours, atol=1e-6, rtol=0)


def test_vit_hf_layout_round_trips_through_load_exported(tmp_path):
    model = _vit()
    out = export_model(model, tmp_path / "v", provenance={}, image_stats=STATS)
    loaded, cfg = load_exported(out)
    assert cfg == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    doc = json.loads((out / "config.json").read_text())
    assert doc["id2label"] == {"0": "cat", "1": "dog", "2": "eel"} and doc["label2id"]["eel"] == 2
    assert doc["logah_nas"]["config"] == model.config.to_dict()


def test_hf_vit_config_without_our_block_loads(tmp_path):
    """A ViTForImageClassification written by transformers' own save_pretrained loads into our ViT."""
    model = _vit()
    out = export_model(model, tmp_path / "v", provenance={})
    doc = json.loads((out / "config.json").read_text())
    del doc["logah_nas"]
    (out / "config.json").write_text(json.dumps(doc))
    (out / "provenance.json").unlink()
    loaded, cfg = load_exported(out)
    x = torch.randn(2, 3, 8, 8)
    assert cfg == model.config and torch.equal(loaded(x)[0], model(x)[0])


def test_image_processor_reproduces_our_normalisation(tmp_path):
    from nas.data._base import ImageDataset

    g = torch.Generator().manual_seed(0)
    split = lambda n: (torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8),  # noqa: E731
                       torch.randint(0, 3, (n,), generator=g))
    ds = ImageDataset("toy", split(32), split(8), split(8), num_classes=3, scale=255.0)
    model = _vit()
    out = export_model(model, tmp_path / "v", provenance={}, image_stats=hf_layout.image_stats(ds))
    processor = transformers.AutoImageProcessor.from_pretrained(out)
    raw = ds._images["val"]
    pixels = processor([im.permute(1, 2, 0).numpy() for im in raw], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixels, ds._normalise(raw), atol=1e-5, rtol=0)
    hf = transformers.AutoModelForImageClassification.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(pixel_values=pixels).logits, model(ds._normalise(raw))[0], atol=1e-4, rtol=0)


@pytest.mark.parametrize("kw,why", [({"class_token": False}, "class_token=False"),
                                    ({"learned_pos_embedding": False}, "learned_pos_embedding=False")])
def test_unrepresentable_vit_keeps_our_format_and_says_so(tmp_path, kw, why):
    model = _vit(**kw)
    out = export_model(model, tmp_path / "v", provenance={}, image_stats=STATS)
    assert json.loads((out / "config.json").read_text())["model_type"] == "logah-vit"
    assert not (out / "preprocessor_config.json").exists()
    card = (out / "README.md").read_text()
    assert why in card and "own format" in card
    loaded, _ = load_exported(out)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(loaded(x)[0], model(x)[0])


# --- GPT-2 --------------------------------------------------------------------------------------


def _byte_gpt2(context: int = 32) -> GPT2:
    return _perturbed(GPT2(GPT2Config(vocab_size=256, context=context, depth=2, width=32, heads=4)), scale=0.3)


@pytest.mark.parametrize("text", ["def f(x):\n    return x", "héllo wörld ✓ 🐍", "  spaces\tand\ttabs  "])
def test_byte_tokenizer_ids_are_the_bytes(text):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(hf_layout.byte_tokenizer_json())
    ids = tok.encode(text).ids
    assert ids == list(text.encode("utf-8"))
    from nas.data._base import bytes_to_tokens
    assert ids == bytes_to_tokens(text.encode("utf-8")).tolist()
    assert tok.decode(ids) == text


def test_pipeline_generates_what_our_greedy_loop_generates(tmp_path):
    model = _byte_gpt2()
    out = export_model(model, tmp_path / "g", provenance={"data": {"name": "pytext"}})
    generate = transformers.pipeline("text-generation", model=str(out))
    prompt = "import os\nde"
    result = generate(prompt, max_new_tokens=12, do_sample=False)[0]["generated_text"]
    ids = torch.tensor([list(prompt.encode())])
    ours = generate_greedy(model, ids, 12, eos_token_id=255)[0].tolist()
    assert result == generate.tokenizer.decode(ours)
    assert result == bytes(ours).decode("utf-8", errors="replace")


def test_generation_is_cut_at_the_context(tmp_path):
    model = _byte_gpt2(context=16)
    out = export_model(model, tmp_path / "g", provenance={"data": {"name": "pytext"}})
    assert json.loads((out / "config.json").read_text())["n_positions"] == 16
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 16
    assert "context length (n_positions): 16" in (out / "README.md").read_text()
    generate = transformers.pipeline("text-generation", model=str(out))
    prompt = "0123456789ab"  # 12 tokens: default generation stops at 16, no IndexError
    ids = generate(prompt, do_sample=False, return_tensors=True)[0]["generated_token_ids"]
    assert len(ids) == 16
    # a prompt + max_new_tokens past the context: the documented "hole" mode keeps the last tokens
    text = generate(prompt, max_new_tokens=10, do_sample=False, handle_long_generation="hole")[0]["generated_text"]
    assert text.startswith(prompt) and len(text.encode()) >= len(prompt) + 1
    # our loop slides its window instead of overflowing the position table
    assert generate_greedy(model, torch.tensor([list(b"0123456789ab")]), 30).shape == (1, 42)


def test_missing_gpt2_bpe_tokenizer_fails_clearly(tmp_path, monkeypatch):
    def not_cached(*args, **kwargs):
        raise OSError("not in the local cache (simulated)")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", not_cached)
    model = GPT2(GPT2Config(vocab_size=50257, context=8, depth=1, width=8, heads=2))
    with pytest.raises(FileNotFoundError, match="GPT-2 BPE tokenizer.*local Hugging Face cache"):
        export_model(model, tmp_path / "g", provenance={"data": {"name": "wikitext2", "tokenizer": "gpt2"}})
    assert list(tmp_path.iterdir()) == []


def test_tokenizer_must_fit_the_vocab(tmp_path):
    from search_spaces import ConfigError

    with pytest.raises(ConfigError, match="tokenizer"):
        export_model(_byte_gpt2(), tmp_path / "g", provenance={}, tokenizer="gpt2")


# --- model card ---------------------------------------------------------------------------------


def test_model_card_has_metrics_hypernet_data_and_loading(tmp_path):
    prov = {"study": "s1", "trial": 3, "metric": "val_loss", "value": 1.25, "val_perplexity": 3.49,
            "hypernet_version": 2, "hypernet": {"version": 2, "sha256": "ab" * 32},
            "data": {"name": "pytext", "context": 32}, "test": {"test_loss": 1.3, "test_perplexity": 3.67}}
    out = export_model(_byte_gpt2(), tmp_path / "g", provenance=prov)
    card = (out / "README.md").read_text()
    for needle in ("gpt2", "parameters:", "| val_loss | 1.25 |", "val_perplexity", "## Test metrics",
                   "| test_perplexity | 3.67 |", "version 2", "ab" * 32, '"pytext"', 'pipeline("text-generation"',
                   "load_exported", "context length (n_positions): 32"):
        assert needle in card, needle
    no_test = export_model(_byte_gpt2(), tmp_path / "h", provenance={k: v for k, v in prov.items() if k != "test"})
    assert "Test metrics" not in (no_test / "README.md").read_text()


def test_vit_card_shows_auto_classes(tmp_path):
    card = (export_model(_vit(), tmp_path / "v", provenance={}, image_stats=STATS) / "README.md").read_text()
    assert "AutoModelForImageClassification" in card and "AutoImageProcessor" in card


@pytest.mark.parametrize("tied", [True, False])
def test_consuming_export_writes_the_same_weights(tmp_path, tied):
    """`consume=True` (used by predict for GPT-2-L) frees parameters as it converts them; same file content."""
    from safetensors.torch import load_file

    model = _perturbed(GPT2(GPT2Config(vocab_size=256, context=16, depth=2, width=32, heads=4, tied_embeddings=tied)))
    a = export_model(model, tmp_path / "a", provenance={})
    b = export_model(model, tmp_path / "b", provenance={}, consume=True)
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((b / "provenance.json").read_text())["logah_nas_export"]["n_params"] == \
        json.loads((a / "provenance.json").read_text())["logah_nas_export"]["n_params"]


def test_gpt2_bpe_tokenizer_is_copied_from_the_local_cache(tmp_path, monkeypatch):
    """tokenizer="gpt2" in the study's data options: the cached GPT-2 BPE files travel with the export
    (a stand-in tokenizer here: the test machine has no Hugging Face cache)."""
    from tokenizers import Tokenizer

    stand_in = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(hf_layout.byte_tokenizer_json()), eos_token="<|endoftext|>")
    asked = []
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        lambda name, **kw: asked.append((name, kw)) or stand_in)
    model = GPT2(GPT2Config(vocab_size=50257, context=8, depth=1, width=8, heads=2))
    data = {"name": "wikitext2", "kind": "text", "options": {"tokenizer": "gpt2", "context": 8}}
    out = export_model(model, tmp_path / "g", provenance={"data": data})
    assert asked == [("gpt2", {"local_files_only": True})]
    assert (out / "tokenizer.json").is_file()
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 8
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == 50256


def test_model_card_says_when_the_safety_net_changed_the_start(tmp_path):
    blended = {"safety": {"outcome": "blended", "strength": 0.125, "init_loss": 2.3, "predicted_loss": 3.1,
                          "loss": 2.1}}
    card = (export_model(_vit(), tmp_path / "v", provenance=blended, image_stats=STATS) / "README.md").read_text()
    assert "safety net" in card and "blended (trained from strength 0.125)" in card
    kept = {"safety": {**blended["safety"], "outcome": "kept", "strength": 0.5}}
    card = (export_model(_vit(), tmp_path / "k", provenance=kept, image_stats=STATS) / "README.md").read_text()
    assert "safety net" not in card
