"""`logah-nas predict` and `nas.predict`: the hypernet's prediction as a loadable export / transformers model."""
from __future__ import annotations

import json

import pytest
import torch

from nas.export import load_exported
from nas.predict import (PredictRequest, load_hypernet, parse_predict_args, predict_export, predicted_hf_model,
                         predicted_model, resolve_config)
from search_spaces import ConfigError, GPT2Config, ViTConfig

transformers = pytest.importorskip("transformers")
GPT2_SIG = {"space": "gpt2", "vocab_size": 256, "context": 64}


def test_parse_presets_fields_and_options():
    r = parse_predict_args(["config=gpt2_l", "depth=3", "mlp_ratio=2", "tied_embeddings=false", "out=x",
                            "strength=0.5", "overwrite=true"])
    assert r == PredictRequest(space="gpt2", preset="gpt2_l", fields={"depth": 3, "mlp_ratio": 2.0,
                                                                      "tied_embeddings": False},
                               out="x", strength=0.5, overwrite=True)
    assert parse_predict_args(["predict.space=vit", "width=32"]).fields == {"width": 32}


@pytest.mark.parametrize("args,field", [(["space=bert"], "space"), (["space=gpt2", "patch_size=2"], "patch_size"),
                                        (["space=vit", "config=gpt2_s"], "config"),
                                        (["space=gpt2", "depth=two"], "depth"),
                                        (["space=vit", "class_token=maybe"], "class_token"),
                                        (["space=gpt2", "depth"], "predict")])
def test_parse_errors_name_the_field(args, field):
    with pytest.raises(ConfigError) as e:
        parse_predict_args(args)
    assert e.value.field == field


def test_preset_takes_the_hypernet_space_fields():
    config, notes = resolve_config(parse_predict_args(["config=gpt2_l"]), GPT2_SIG)
    assert (config.vocab_size, config.context, config.depth, config.width, config.heads) == (256, 64, 36, 1280, 20)
    assert notes == ["vocab_size 50257 -> 256 (the hypernet's space)", "context 1024 -> 64 (the hypernet's space)"]
    with pytest.raises(ConfigError) as e:
        resolve_config(parse_predict_args(["config=gpt2_s", "context=1024"]), GPT2_SIG)
    assert e.value.field == "context"


def test_predicted_model_is_the_hypernets_prediction():
    hn, path, _ = load_hypernet("gpt2")
    assert path.name == "gpt2_pytext.safetensors"
    config = GPT2Config(vocab_size=256, context=64, depth=2, width=64, heads=4)
    model = predicted_model(hn, config)
    expected = hn.predict(config)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, expected[name], atol=1e-6, rtol=0, msg=name)
    assert model.lm_head.weight is model.wte.weight


def test_predict_export_loads_in_transformers_pipeline(tmp_path):
    out = predict_export(parse_predict_args(["space=gpt2", "depth=2", "width=64", "heads=4", f"out={tmp_path / 'g'}"]),
                         progress=False)
    generate = transformers.pipeline("text-generation", model=str(out))
    text = generate("def ", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("def ")
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["source"] == "hypernet_prediction" and prov["hypernet"]["checkpoint"] == "gpt2_pytext.safetensors"
    card = (out / "README.md").read_text()
    assert "hypernetwork's prediction" in card and "gpt2_pytext.safetensors" in card
    _, config = load_exported(out)
    assert (config.depth, config.width) == (2, 64)


def test_predict_vit_export_has_the_digits_processor(tmp_path):
    out = predict_export(parse_predict_args(["space=vit", "depth=2", "width=32", "heads=2", f"out={tmp_path / 'v'}"]),
                         progress=False)
    processor = transformers.AutoImageProcessor.from_pretrained(out)
    assert processor.rescale_factor == 1 / 16 and len(processor.image_mean) == 1
    hf = transformers.AutoModelForImageClassification.from_pretrained(out)
    assert hf.config.num_labels == 10


def test_predicted_hf_model_gpt2_matches_our_prediction():
    hc = transformers.GPT2Config(vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                 bos_token_id=255, eos_token_id=255)
    hf = predicted_hf_model(hc)
    assert isinstance(hf, transformers.GPT2LMHeadModel)
    hn, _, _ = load_hypernet("gpt2")
    ours = predicted_model(hn, GPT2Config(vocab_size=256, context=64, depth=2, width=64, heads=4))
    x = torch.randint(0, 256, (2, 64), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x)[0], atol=1e-5, rtol=0)


def test_predicted_hf_model_vit_matches_our_prediction():
    hc = transformers.ViTConfig(image_size=8, patch_size=2, num_channels=1, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, layer_norm_eps=1e-6, num_labels=10)
    hf = predicted_hf_model(hc)
    assert isinstance(hf, transformers.ViTForImageClassification)
    hn, _, _ = load_hypernet("vit")
    ours = predicted_model(hn, ViTConfig(image_size=8, channels=1, patch_size=2, depth=2, width=32, heads=2,
                                         mlp_ratio=2.0, num_classes=10))
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(pixel_values=x).logits, ours(x)[0], atol=1e-5, rtol=0)


def test_predicted_hf_model_outside_the_space_names_the_field():
    with pytest.raises(ConfigError) as e:
        predicted_hf_model(transformers.GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4))
    assert e.value.field == "vocab_size"
    with pytest.raises(ConfigError) as e:
        predicted_hf_model(transformers.ViTConfig(image_size=8, patch_size=2, num_channels=1, hidden_size=32,
                                                  num_hidden_layers=1, num_attention_heads=2, layer_norm_eps=1e-6,
                                                  intermediate_size=64, num_labels=5))
    assert e.value.field == "num_classes"


def test_cli_predict_writes_an_export(tmp_path, capsys):
    from nas.cli import main

    out = tmp_path / "p"
    assert main(["predict", "space=gpt2", "depth=1", "width=32", "heads=2", f"out={out}"]) == 0
    assert (out / "tokenizer.json").is_file() and str(out) in capsys.readouterr().out
    assert main(["predict", "space=gpt2", "bogus=1"]) == 2
