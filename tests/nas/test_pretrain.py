"""nas.pretrain: writes a loadable checkpoint for the right space, never samples the unseen architectures, has a CLI."""
from __future__ import annotations

import random
from dataclasses import fields

import pytest
import torch

from hypernet import trainstate_path
from nas.pretrain import UNSEEN_SEED, Recipe, _parser, main, pretrain, sampler_excluding, unseen_architectures
from search_spaces import ConfigError, build_model, get_space

SMALL_VIT = {"depth": (1, 2), "width": (16, 32, 16), "heads": (2,), "patch_sizes": (4,), "mlp_ratios": (2.0,)}


def test_pretrain_writes_a_loadable_checkpoint_with_the_space_signature(tmp_path):
    from hypernet import load_checkpoint

    out = pretrain(space="vit", data="digits", steps=3, out=tmp_path / "vit.safetensors", seed=1, device="cpu",
                   batch_size=8, space_options=SMALL_VIT, progress=False)
    assert out == tmp_path / "vit.safetensors" and out.exists()
    assert not trainstate_path(out).exists()  # the resumable state is removed once the run is complete
    hn, meta = load_checkpoint(out)
    space = get_space("vit", **SMALL_VIT, image_size=8, channels=1, num_classes=10)
    assert meta["space_signature"] == space.signature()
    assert meta["data"] == "digits" and meta["steps"] == 3 and meta["seed"] == 1 and meta["variant"] == "tiny"
    assert meta["seconds"] > 0 and "python -m nas.pretrain" in meta["command"]
    assert meta["heldout_seed"] == UNSEEN_SEED
    fingerprint = meta["data_fingerprint"]  # the examples it learned from: what the study-side guard checks
    assert fingerprint["data"] == "digits" and fingerprint["examples"] == 1438 and fingerprint["split"] == "train"
    config = unseen_architectures(space)[0]
    params = hn.predict(config)
    assert set(params) == set(dict(build_model(config).named_parameters()))
    assert all(torch.isfinite(t).all() for t in params.values())


def test_unseen_architectures_are_never_sampled_for_training():
    space = get_space("vit", image_size=8, channels=1, num_classes=10)  # the default (shipped) space
    held = unseen_architectures(space)
    assert len(held) == 8 and len(set(held)) == 8
    assert held == unseen_architectures(space)  # deterministic
    sample, rng = sampler_excluding(space, held), random.Random(0)
    drawn = {sample(rng) for _ in range(500)}
    assert len(drawn) > 50 and not drawn & set(held)
    tiny = get_space("vit", **SMALL_VIT, image_size=8, channels=1, num_classes=10)  # 4 architectures
    assert len(unseen_architectures(tiny)) == 1  # most of a tiny space stays available for training


def test_shallow_share_draws_that_share_at_the_smallest_depth_and_zero_keeps_old_draws():
    space = get_space("vit", image_size=8, channels=1, num_classes=10)
    held = unseen_architectures(space)
    rng_plain, rng_zero = random.Random(5), random.Random(5)
    plain, zero = sampler_excluding(space, held), sampler_excluding(space, held, shallow_share=0.0)
    assert [plain(rng_plain) for _ in range(100)] == [zero(rng_zero) for _ in range(100)]  # old commands reproduce
    everything = sampler_excluding(space, held, shallow_share=1.0)
    rng = random.Random(0)
    drawn = [everything(rng) for _ in range(200)]
    assert {c.depth for c in drawn} == {1} and len(set(drawn)) > 10 and not set(drawn) & set(held)
    half = sampler_excluding(space, held, shallow_share=0.5)
    rng = random.Random(0)
    share = sum(half(rng).depth == 1 for _ in range(3000)) / 3000
    assert share == pytest.approx(0.5 + 0.5 / 6, abs=0.03)  # forced draws plus depth 1's share of the uniform ones
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=r"shallow_share.*\[0.0, 1.0\]"):
            sampler_excluding(space, held, shallow_share=bad)


def test_a_restarted_run_must_keep_its_architecture_sampling(tmp_path):
    out = tmp_path / "vit.safetensors"
    pretrain(space="vit", data="digits", steps=1, out=out, device="cpu", batch_size=8, space_options=SMALL_VIT,
             progress=False, keep_trainstate=True, shallow_share=0.5)
    with pytest.raises(ConfigError, match=r"shallow_share=0.0 is invalid: allowed 0.5, the value the run"):
        pretrain(space="vit", data="digits", steps=2, out=out, device="cpu", batch_size=8,
                 space_options=SMALL_VIT, progress=False)


@pytest.mark.parametrize("recipe", [Recipe(), Recipe(steps=7, seed=3, meta_batch=2, batch_size=16, lr=3e-4),
                                    Recipe(lookahead=1e-3, unroll_steps=2, unroll_lr=3e-4, input_noise=0.5,
                                           shallow_share=0.67)])
def test_the_recorded_command_replays_the_recipe(recipe):
    args = _parser().parse_args(recipe.cli_args())
    assert Recipe(**{f.name: getattr(args, f.name) for f in fields(Recipe)}) == recipe


def test_a_bad_recipe_is_refused_before_any_work(tmp_path):
    with pytest.raises(TypeError, match="unknown arguments"):
        pretrain(out=tmp_path / "x.safetensors", step=3)
    with pytest.raises(ConfigError, match="shallow_share"):
        pretrain(out=tmp_path / "x.safetensors", shallow_share=2.0)
    assert not (tmp_path / "x.safetensors").exists()


def test_the_unseen_seed_cannot_be_used_for_pretraining(tmp_path):
    with pytest.raises(ConfigError, match="seed"):
        pretrain(steps=1, out=tmp_path / "x.safetensors", seed=UNSEEN_SEED, progress=False)


def test_cli(tmp_path, capsys):
    out = tmp_path / "gpt.safetensors"
    code = main(["--space", "gpt2", "--data", "pytext", "--steps", "1", "--batch-size", "2", "--device", "cpu",
                 "--out", str(out), "--no-progress"])
    assert code == 0 and out.exists()
    assert str(out) in capsys.readouterr().out
    assert main(["--space", "gpt2", "--data", "pytext", "--steps", "0", "--out", str(out), "--no-progress"]) == 2
    assert "steps" in capsys.readouterr().err


def test_pretrain_from_a_checkpoint_records_its_parent(tmp_path):
    from hypernet import load_checkpoint

    first = pretrain(space="vit", data="digits", steps=2, out=tmp_path / "a.safetensors", device="cpu",
                     batch_size=8, space_options=SMALL_VIT, progress=False)
    parent, parent_meta = load_checkpoint(first)
    second = pretrain(space="vit", data="digits", steps=2, out=tmp_path / "b.safetensors", device="cpu",
                      batch_size=8, space_options=SMALL_VIT, progress=False, init=first, lookahead=0.002,
                      unroll_steps=2, input_noise=0.25, shallow_share=0.5)
    hn, meta = load_checkpoint(second)
    assert meta["init_checkpoint"]["sha256"] == parent_meta["sha256"]
    assert meta["init_checkpoint"]["command"] == parent_meta["command"]
    assert "--init" in meta["command"] and "--lookahead 0.002" in meta["command"] and meta["lookahead"] == 0.002
    assert "--unroll-steps 2 --unroll-lr 0.001" in meta["command"] and meta["unroll_steps"] == 2
    assert "--input-noise 0.25" in meta["command"] and meta["input_noise"] == 0.25
    assert "--shallow-share 0.5" in meta["command"] and meta["shallow_share"] == 0.5
    assert hn.config == parent.config
    assert any(not torch.equal(a, b) for a, b in zip(hn.state_dict().values(), parent.state_dict().values()))
    with pytest.raises(ConfigError, match="hypernet_options"):
        pretrain(space="vit", data="digits", steps=1, out=tmp_path / "c.safetensors", init=first,
                 hypernet_options={"rank": 8}, space_options=SMALL_VIT, progress=False)


def test_a_correction_cap_is_set_on_a_fresh_or_init_hypernet_and_recorded(tmp_path):
    """`--correction-cap` turns the bound on from this stage (also on an init meta-trained without
    one); the checkpoint's config and metadata keep it, the command replays it, later stages
    inherit it, and a restart with another cap is refused."""
    from hypernet import load_checkpoint

    first = pretrain(space="vit", data="digits", steps=1, out=tmp_path / "a.safetensors", device="cpu",
                     batch_size=8, space_options=SMALL_VIT, progress=False)
    assert load_checkpoint(first)[0].config.correction_cap is None
    out = tmp_path / "b.safetensors"
    second = pretrain(space="vit", data="digits", steps=1, out=out, device="cpu", batch_size=8,
                      space_options=SMALL_VIT, progress=False, init=first, correction_cap=2.5, keep_trainstate=True)
    hn, meta = load_checkpoint(second)
    assert hn.config.correction_cap == 2.5 and meta["correction_cap"] == 2.5
    assert "--correction-cap 2.5" in meta["command"]
    assert _parser().parse_args(["--correction-cap", "2.5"]).correction_cap == 2.5
    with pytest.raises(ConfigError, match="correction_cap"):  # resuming b with another cap
        pretrain(space="vit", data="digits", steps=2, out=out, device="cpu", batch_size=8, space_options=SMALL_VIT,
                 progress=False, init=first, correction_cap=3.0)
    third = pretrain(space="vit", data="digits", steps=1, out=tmp_path / "c.safetensors", device="cpu", batch_size=8,
                     space_options=SMALL_VIT, progress=False, init=second)
    assert load_checkpoint(third)[0].config.correction_cap == 2.5  # inherited
    fresh = pretrain(space="vit", data="digits", steps=1, out=tmp_path / "d.safetensors", device="cpu", batch_size=8,
                     space_options=SMALL_VIT, progress=False, correction_cap=4.0)
    assert load_checkpoint(fresh)[0].config.correction_cap == 4.0
    with pytest.raises(ConfigError, match="correction_cap"):
        pretrain(space="vit", data="digits", steps=1, out=tmp_path / "e.safetensors", device="cpu",
                 space_options=SMALL_VIT, progress=False, correction_cap=0.0)


def test_the_cli_defaults_are_the_recipe_defaults():
    args = _parser().parse_args([])
    assert Recipe(**{f.name: getattr(args, f.name) for f in fields(Recipe)}) == Recipe()


def test_a_recipe_checks_every_field_before_any_work(tmp_path):
    # the limits the library's MetaTrainConfig enforces, named as the pretrain() argument
    for bad, needle in [({"unroll_lr": 0.5}, r"unroll_lr=0.5 is invalid: allowed a number in \(0.0, 0.3\]"),
                        ({"meta_batch": 0}, "meta_batch=0"),
                        ({"seed": -1}, r"seed=-1 is invalid: allowed an integer >= 0")]:
        with pytest.raises(ConfigError, match=needle):
            Recipe(**bad)
        with pytest.raises(ConfigError, match=needle):
            pretrain(out=tmp_path / "x.safetensors", progress=False, **bad)
    assert not (tmp_path / "x.safetensors").exists()


def test_range_widths_cover_the_space_off_its_grid_but_never_the_held_out_shapes():
    from nas.pretrain import range_widths
    from nas.unseen import shape_signature, unseen_shape_classes

    space = get_space("vit", image_size=8, channels=1, num_classes=10)
    held_out = [c for configs in unseen_shape_classes(space).values() for c in configs]
    widths = range_widths(space)
    off_grid = {c.width for c in unseen_shape_classes(space)["off_grid_width"]}
    assert {48, 88, 104, 120} <= set(widths) and off_grid and not off_grid & set(widths)
    sample, rng = sampler_excluding(space, unseen_architectures(space), widths="range"), random.Random(0)
    drawn = [sample(rng) for _ in range(1500)]
    assert len({c.width for c in drawn}) > 30  # not the 7 grid widths
    assert all(c.width % c.heads == 0 and c.heads in space.heads for c in drawn)
    held_shapes = {shape_signature(c) for c in held_out}
    assert not {shape_signature(c) for c in set(drawn)} & held_shapes
    grid, rng = sampler_excluding(space, []), random.Random(0)
    assert {grid(rng).width for _ in range(300)} == set(range(32, 129, 16))  # "grid" keeps the old draws
    with pytest.raises(ConfigError, match="widths"):
        sampler_excluding(space, [], widths="all")
    with pytest.raises(ConfigError, match="widths"):
        Recipe(widths="all")


def test_a_checkpoint_without_a_coverage_record_gets_its_grid_recorded_before_training(tmp_path):
    from hypernet import load_checkpoint

    first = pretrain(space="vit", data="digits", steps=1, out=tmp_path / "a.safetensors", device="cpu",
                     batch_size=8, space_options=SMALL_VIT, progress=False)
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "hypernet"))
    from test_coverage import _without_record

    _without_record(first)
    assert not load_checkpoint(first)[0].coverage_recorded()
    second = pretrain(space="vit", data="digits", steps=1, out=tmp_path / "b.safetensors", device="cpu",
                      batch_size=8, space_options=SMALL_VIT, progress=False, init=first, widths="range")
    hn, meta = load_checkpoint(second)
    assert hn.coverage_recorded() and int(hn.width_seen) == 32 and int(hn.layers_seen) == 2
    assert "--widths range" in meta["command"] and meta["widths"] == "range"
    stages = meta["stages"]
    assert [s["command"] for s in stages] == [load_checkpoint(first)[1]["command"], meta["command"]]
    assert stages[-1]["cpu_seconds"] > 0 and stages[-1]["threads"] >= 1


def test_total_cpu_hours_counts_recorded_stages_and_says_how_many_are_missing():
    from nas.pretrain import total_cpu_hours

    meta = {"stages": [{"command": "a", "cpu_seconds": None}, {"command": "b", "cpu_seconds": 1800.0},
                       {"command": "c", "cpu_seconds": 5400.0}]}
    assert total_cpu_hours(meta) == (2.0, 1)
    assert total_cpu_hours({}) == (0.0, 0)
