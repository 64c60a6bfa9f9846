"""Exports: round trips, Hugging Face compatibility, secrets, overwrite safety, atomicity."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open

import nas.export as export
from nas.export import export_model, hf_gpt2_to_state_dict, load_exported, state_dict_to_hf_gpt2
from nas.secrets import is_secret_key, mask_secrets, mask_url
from search_spaces import GPT2, ViT, GPT2Config, ViTConfig

PROVENANCE = {"study": "s1", "trial": 3, "metric": {"val_loss": 1.25}, "hypernet_version": 2,
              "hypernet_sha256": "ab" * 32, "seed": 0, "data": "pytext"}


def _perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial biases and LayerNorms, so a mis-mapped or untransposed tensor changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def _gpt2(tied: bool = True, mlp_ratio: float = 4.0, **kw) -> GPT2:
    cfg = GPT2Config(vocab_size=64, context=16, depth=2, width=32, heads=4, mlp_ratio=mlp_ratio,
                     tied_embeddings=tied, **kw)
    return _perturbed(GPT2(cfg))


def _tokens(model: GPT2, t: int = 16) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (2, t), generator=torch.Generator().manual_seed(1))


# --- round trips through our own loader ---------------------------------------------------------


@pytest.mark.parametrize("class_token,learned_pos", [(True, True), (False, False)])
def test_vit_round_trip_is_exact(tmp_path, class_token, learned_pos):
    cfg = ViTConfig(image_size=8, channels=1, patch_size=2, depth=2, width=16, heads=2, num_classes=3,
                    class_token=class_token, learned_pos_embedding=learned_pos)
    model = _perturbed(ViT(cfg))
    out = export_model(model, tmp_path / "vit", provenance=PROVENANCE)
    loaded, loaded_cfg = load_exported(out)
    assert loaded_cfg == cfg and isinstance(loaded, ViT) and not loaded.training
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded(x)[0], model(x)[0])
    doc = json.loads((out / "config.json").read_text())
    assert doc["model_type"] == ("vit" if class_token else "logah-vit") and doc["logah_nas"]["config"] == cfg.to_dict()


@pytest.mark.parametrize("tied", [True, False])
def test_gpt2_round_trip_is_exact(tmp_path, tied):
    model = _gpt2(tied)
    loaded, cfg = load_exported(export_model(model, tmp_path / "g", provenance=PROVENANCE))
    assert cfg == model.config
    x = _tokens(model)
    assert torch.equal(loaded(x)[0], model(x)[0])
    assert (loaded.lm_head.weight is loaded.wte.weight) == tied  # the tie survives loading


def test_bf16_export_keeps_its_precision(tmp_path):
    model = _gpt2().to(torch.bfloat16)
    loaded, _ = load_exported(export_model(model, tmp_path / "g", provenance={}))
    assert loaded.wte.weight.dtype == torch.bfloat16
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_hf_layout_and_metadata(tmp_path):
    model = _gpt2(tied=False, mlp_ratio=2.0)
    out = export_model(model, tmp_path / "g", provenance=PROVENANCE)
    with safe_open(out / "model.safetensors", "pt") as f:
        assert f.metadata() == {"format": "pt"}
        keys = set(f.keys())
        assert tuple(f.get_slice("transformer.h.1.mlp.c_fc.weight").get_shape()) == (32, 64)  # Conv1D: [in, out]
        assert torch.equal(f.get_tensor("transformer.h.0.attn.c_attn.weight"), model.blocks[0].attn.c_attn.weight.T)
    assert "lm_head.weight" in keys and "transformer.wte.weight" in keys and not any("blocks" in k for k in keys)
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["n_embd"], cfg["n_layer"], cfg["n_head"], cfg["n_inner"], cfg["n_positions"]) == (32, 2, 4, 64, 16)
    assert cfg["tie_word_embeddings"] is False and cfg["eos_token_id"] == 63 and cfg["logah_nas"]["space"] == "gpt2"
    assert (out / "provenance.json").stat().st_mode & 0o777 == 0o644


# --- Hugging Face transformers ------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("mlp_ratio", [2.0, 4.0])
def test_transformers_loads_export_with_same_logits(tmp_path, tied, mlp_ratio):
    transformers = pytest.importorskip("transformers")
    model = _gpt2(tied, mlp_ratio)
    out = export_model(model, tmp_path / "g", provenance=PROVENANCE)
    hf, info = transformers.GPT2LMHeadModel.from_pretrained(out, output_loading_info=True)
    assert {k: list(v) for k, v in info.items() if v} == {}  # no missing/unexpected/mismatched keys
    hf.eval()
    assert hf.config.tie_word_embeddings == tied
    assert (hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()) == tied
    x = _tokens(model)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, model(x)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("tied", [True, False])
def test_hf_save_pretrained_loads_into_our_model(tmp_path, tied):
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=4, n_inner=64,
                                     tie_word_embeddings=tied, bos_token_id=63, eos_token_id=63)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours, cfg = load_exported(tmp_path / "hf")
    assert (cfg.width, cfg.depth, cfg.mlp_hidden, cfg.tied_embeddings) == (32, 2, 64, tied)
    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], hf(x).logits, atol=1e-5, rtol=0)


def test_unsupported_hf_variant_is_refused(tmp_path):
    model = _gpt2()
    out = export_model(model, tmp_path / "g", provenance={})
    doc = json.loads((out / "config.json").read_text())
    del doc["logah_nas"]
    doc["activation_function"] = "relu"
    (out / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="activation_function='relu'"):
        load_exported(out)


# --- strict mapping -----------------------------------------------------------------------------


def test_hf_mapping_is_strict_and_names_the_key():
    model = _gpt2(tied=False)
    good = state_dict_to_hf_gpt2(model)
    assert set(hf_gpt2_to_state_dict(good, model.config)) == set(model.state_dict())
    missing = {k: v for k, v in good.items() if k != "transformer.h.1.ln_2.bias"}
    with pytest.raises(ValueError, match=r"missing tensor 'transformer.h.1.ln_2.bias'"):
        hf_gpt2_to_state_dict(missing, model.config)
    with pytest.raises(ValueError, match=r"unexpected tensor 'transformer.h.2.ln_1.weight'"):
        hf_gpt2_to_state_dict({**good, "transformer.h.2.ln_1.weight": torch.ones(32)}, model.config)
    untransposed = {**good, "transformer.h.0.mlp.c_fc.weight": model.blocks[0].mlp.c_fc.weight.detach()}
    with pytest.raises(ValueError, match=r"'transformer.h.0.mlp.c_fc.weight' has shape \(128, 32\).*\(32, 128\)"):
        hf_gpt2_to_state_dict(untransposed, model.config)
    tied_cfg = dataclasses.replace(model.config, tied_embeddings=True)
    with pytest.raises(ValueError, match=r"unexpected tensor 'lm_head.weight'"):
        hf_gpt2_to_state_dict(good, tied_cfg)


def test_config_weights_mismatch_names_file_and_key(tmp_path):
    out = export_model(_gpt2(), tmp_path / "g", provenance={})
    doc = json.loads((out / "config.json").read_text())
    doc["logah_nas"]["config"]["depth"] = 3
    (out / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"model.safetensors: GPT-2 weights: missing tensor 'transformer.h.2"):
        load_exported(out)


# --- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url,masked", [
    ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
    ("postgresql+psycopg://u:p%40ss@db.example.com:5432/optuna", "postgresql+psycopg://u:***@db.example.com:5432/optuna"),
    ("mysql://root:p@ss:w/rd@localhost/x", "mysql://root:***@localhost/x"),  # raw '@' never leaks a suffix
    ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
    ("sqlite:///logah_runs/study.db", "sqlite:///logah_runs/study.db"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("postgresql://user:@host/db", "postgresql://user:@host/db"),
    ("https://host/x?user=a&password=b&mode=c", "https://host/x?user=a&password=***&mode=c"),
    ("failed: postgresql://a:b@h1 and mysql://c:d@h2", "failed: postgresql://a:***@h1 and mysql://c:***@h2"),
])
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_secret_key_names():
    for name in ("password", "db_password", "PGPASSWORD", "hfToken", "api_key", "client_secret", "secret_key"):
        assert is_secret_key(name), name
    for name in ("eos_token_id", "eos_token", "max_tokens", "sort_key", "password_file", "study", "tokenizer"):
        assert not is_secret_key(name), name


def test_mask_secrets_is_recursive_and_copies():
    original = {"storage": "postgresql://u:pw@h/db", "auth": {"token": "abc", "user": "bob", "password": None},
                "urls": ("mysql://a:b@c",), "list": [{"api_key": "k"}], "n": 3}
    masked = mask_secrets(original)
    assert masked == {"storage": "postgresql://u:***@h/db", "auth": {"token": "***", "user": "bob", "password": None},
                      "urls": ("mysql://a:***@c",), "list": [{"api_key": "***"}], "n": 3}
    assert original["auth"]["token"] == "abc"


def test_provenance_is_masked_and_records_checksum(tmp_path):
    prov = {**PROVENANCE, "storage": "postgresql://optuna:s3cret@db:5432/runs", "config": {"db_password": "s3cret"},
            "out": tmp_path}
    out = export_model(_gpt2(), tmp_path / "g", provenance=prov)
    text = (out / "provenance.json").read_text()
    assert "s3cret" not in text
    doc = json.loads(text)
    assert doc["storage"] == "postgresql://optuna:***@db:5432/runs" and doc["config"]["db_password"] == "***"
    assert doc["study"] == "s1" and doc["metric"] == {"val_loss": 1.25} and doc["out"] == str(tmp_path)
    from search_spaces.files import sha256_file
    assert doc["logah_nas_export"]["model_sha256"] == sha256_file(out / "model.safetensors")
    assert doc["logah_nas_export"]["n_params"] == _gpt2().num_params()


def test_bad_provenance_fails_before_writing(tmp_path):
    with pytest.raises(TypeError, match="object"):
        export_model(_gpt2(), tmp_path / "g", provenance={"x": object()})
    with pytest.raises(ValueError, match="reserved"):
        export_model(_gpt2(), tmp_path / "g", provenance={"logah_nas_export": 1})
    assert list(tmp_path.iterdir()) == []


# --- overwrite ----------------------------------------------------------------------------------


def test_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "g"
    out.mkdir()  # an existing empty directory is fine
    export_model(_gpt2(), out, provenance={"trial": 1})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_model(_gpt2(tied=False), out, provenance={"trial": 2})
    assert json.loads((out / "provenance.json").read_text())["trial"] == 1
    export_model(_gpt2(tied=False), out, provenance={"trial": 2}, overwrite=True)
    assert json.loads((out / "provenance.json").read_text())["trial"] == 2
    assert load_exported(out)[1].tied_embeddings is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # no temp or backup directory left


def test_overwrite_never_deletes_foreign_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        export_model(_gpt2(), tmp_path, provenance={}, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        export_model(_gpt2(), tmp_path / "file", provenance={})


# --- corrupt or missing files -------------------------------------------------------------------


def test_truncated_weights_give_a_clear_error(tmp_path):
    out = export_model(_gpt2(), tmp_path / "g", provenance={})
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match="corrupt or truncated: sha256"):
        load_exported(out)
    (out / "provenance.json").unlink()  # without a recorded hash the parser itself must complain
    with pytest.raises(ValueError, match=r"model.safetensors is not a readable safetensors file"):
        load_exported(out)
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_exported(out)


def test_missing_files_and_corrupt_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_exported(tmp_path / "nowhere")
    out = export_model(_gpt2(), tmp_path / "g", provenance={})
    (out / "config.json").write_text('{"logah_nas": ')
    with pytest.raises(ValueError, match=r"config.json is not valid JSON"):
        load_exported(out)
    (out / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config.json"):
        load_exported(out)
    out = export_model(_gpt2(), tmp_path / "h", provenance={})
    (out / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"h/model.safetensors"):
        load_exported(out)
    out = export_model(_gpt2(), tmp_path / "i", provenance={})
    (out / "provenance.json").write_text("[1,")
    with pytest.raises(ValueError, match=r"provenance.json is not valid JSON"):
        load_exported(out)


# --- atomicity ----------------------------------------------------------------------------------


def _crash_on(name: str):
    real = export.atomic_write_text

    def write(path, text):
        if os.path.basename(path) == name:
            raise OSError("disk full (simulated)")
        real(path, text)

    return write


def test_crash_mid_export_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "atomic_write_text", _crash_on("provenance.json"))
    with pytest.raises(OSError, match="simulated"):
        export_model(_gpt2(), tmp_path / "g", provenance={})
    assert list(tmp_path.iterdir()) == []


def test_crash_mid_overwrite_keeps_the_previous_export(tmp_path, monkeypatch):
    model = _gpt2()
    out = export_model(model, tmp_path / "g", provenance={"trial": 1})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(export, "atomic_write_text", _crash_on("config.json"))
    with pytest.raises(OSError, match="simulated"):
        export_model(_gpt2(tied=False), out, provenance={"trial": 2}, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]


def test_killed_process_never_leaves_a_partial_export(tmp_path):
    """A hard kill (no cleanup runs) mid-export: the target never appears, only a hidden temp dir."""
    script = textwrap.dedent(f"""
        import os, torch
        import nas.export as export
        from search_spaces import GPT2, GPT2Config
        real = export.atomic_write_text
        def write(path, text):
            if os.path.basename(path) == "provenance.json":
                os._exit(9)
            real(path, text)
        export.atomic_write_text = write
        export.export_model(GPT2(GPT2Config(vocab_size=16, context=4, depth=1, width=8, heads=2)),
                            {str(tmp_path / 'g')!r}, provenance={{}})
    """)
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 9, result.stderr
    assert not (tmp_path / "g").exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".g.") and leftovers[0].endswith(".tmp")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_export_from_cuda_model(tmp_path):
    model = _gpt2(tied=False).cuda()
    loaded, _ = load_exported(export_model(model, tmp_path / "g", provenance={}))
    x = _tokens(model)
    torch.testing.assert_close(loaded(x)[0], model(x.cuda())[0].cpu(), atol=1e-5, rtol=1e-5)
