"""bench/protocol.py: its pure helpers on hand-made inputs whose answers are known, and one quick
run on ViT x digits whose JSON must hold every arm, budget and shape class with finite numbers."""
from __future__ import annotations

import json
import math

import pytest


def test_mean_se(protocol):
    s = protocol.mean_se([1.0, 2.0, 3.0])
    assert s["mean"] == pytest.approx(2.0) and s["se"] == pytest.approx(1 / math.sqrt(3)) and s["n"] == 3
    assert s["diverged"] == 0
    s = protocol.mean_se([2.0, float("nan"), 4.0, float("inf")])  # diverged runs are counted, not averaged
    assert s["mean"] == pytest.approx(3.0) and s["se"] == pytest.approx(1.0) and (s["n"], s["diverged"]) == (2, 2)
    s = protocol.mean_se([5.0])
    assert s["mean"] == 5.0 and s["se"] is None
    assert protocol.mean_se([float("nan")])["mean"] is None


def test_mean_curve_keeps_the_steps_every_run_reached(protocol):
    a = [{"step": 0, "val_loss": 3.0}, {"step": 5, "val_loss": 2.0}, {"step": 10, "val_loss": 1.0}]
    b = [{"step": 0, "val_loss": 1.0}, {"step": 5, "val_loss": 4.0}]  # diverged after step 5
    assert protocol.mean_curve([a, b]) == [(0, 2.0), (5, 3.0)]
    assert protocol.mean_curve([]) == []


def test_steps_to_reach(protocol):
    curve = [(0, 3.0), (5, 2.0), (10, 1.0)]
    assert protocol.steps_to_reach(curve, 2.0) == 5  # <= counts
    assert protocol.steps_to_reach(curve, 1.5) == 10
    assert protocol.steps_to_reach(curve, 3.5) == 0
    assert protocol.steps_to_reach(curve, 0.5) is None
    assert protocol.steps_to_reach(curve, None) is None
    assert protocol.steps_to_reach([(0, float("nan")), (5, 1.0)], 2.0) == 5


def test_pick_lr(protocol):
    finals = {3e-4: [1.5, 1.5], 1e-3: [1.0, 1.2], 3e-3: [0.5, float("nan")]}  # 3e-3 diverged on one seed
    assert protocol.pick_lr(finals) == 1e-3
    assert protocol.pick_lr({3e-4: [1.0], 1e-3: [0.9]}) == 1e-3
    assert protocol.pick_lr({3e-3: [1.0], 1e-3: [1.0]}) == 1e-3  # a tie: the smaller lr
    assert protocol.pick_lr({1e-3: [float("nan")]}) == 1e-3  # all diverged: still an answer


def test_seconds_saved_and_break_even(protocol):
    assert protocol.seconds_saved(100.0, 400, 100, 5.0) == pytest.approx(70.0)  # 3/4 of 100 s, minus 5 s
    assert protocol.seconds_saved(100.0, 400, None, 5.0) == 0.0
    assert protocol.seconds_saved(100.0, 400, 400, 5.0) == pytest.approx(-5.0)
    assert protocol.break_even(7000.0, 70.0) == pytest.approx(100.0)
    assert protocol.break_even(7000.0, 0.0) is None
    assert protocol.break_even(7000.0, -5.0) is None


def test_verdict(protocol):
    def st(mean, se):
        return {"mean": mean, "se": se}

    assert protocol.verdict(st(1.0, None), st(2.0, None)) == "win"
    assert protocol.verdict(st(2.0, None), st(2.0, None)) == "win"  # <= is a win
    assert protocol.verdict(st(2.5, None), st(2.0, None)) == "loss"
    assert protocol.verdict(st(2.1, 0.3), st(2.0, 0.4)) == "loss/level"  # 0.1 within hypot(0.3, 0.4) = 0.5
    assert protocol.verdict(st(1.0, 0.3), st(2.0, 0.4)) == "win"
    assert protocol.verdict(st(None, None), st(2.0, 0.4)) is None


def test_pretrain_cost_estimates_parent_stages_from_steps(protocol):
    meta = {"seconds": 100.0, "steps": 1000, "device": "cpu",
            "init_checkpoint": {"steps": 500, "parent": {"steps": 1500, "parent": None}}}
    cost = protocol.pretrain_cost(meta)
    assert cost["seconds"] == pytest.approx(100.0 + 50.0 + 150.0) and cost["stages"] == 3 and cost["steps"] == 3000
    assert cost["recorded_seconds"] == 100.0 and cost["estimated_seconds"] == pytest.approx(200.0)
    assert protocol.pretrain_cost(meta, override_hours=2.0)["seconds"] == pytest.approx(7200.0)
    assert protocol.pretrain_cost({"seconds": 60.0, "steps": 10})["source"] == "metadata"


def test_parse_budgets(protocol):
    assert protocol.parse_budgets("150,study,long", 400, 1500) == [("150", 150), ("study", 400), ("long", 1500)]
    assert protocol.parse_budgets("400,study", 400, 1500) == [("400", 400)]  # the same budget once
    with pytest.raises(SystemExit):
        protocol.parse_budgets("150,forever", 400, 1500)
    assert protocol.default_eval_every(150) == 5 and protocol.default_eval_every(1500) == 50
    assert protocol.default_eval_every(10) == 1


def _finite_numbers(obj, path="$"):
    """Every number in a JSON tree, with its path (None stands for 'never' / undefined)."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _finite_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _finite_numbers(v, f"{path}[{i}]")


@pytest.mark.slow  # ~30 s on one thread
def test_quick_run_reports_every_arm_budget_and_class(protocol, capsys, tmp_path):
    from nas.unseen import CLASSES

    out = tmp_path / "protocol.json"
    protocol.main(["--quick", "--spaces", "vit", "--out", str(out), "--markdown", "--warm-strength", "0.25"])
    first, _, human = capsys.readouterr().out.partition("\n")
    assert "| wide_4x | L1 d512 h8 p2 m2 | 4 | " in human and "\n| 8 | " in human  # a row per arch, a count per budget
    assert "val / test / 1/3 steps" in human and " @0.001 |" in human and "↑" not in human  # one lr: no grid edge
    assert "\nBreak-even at 8 steps (trials whose saved steps pay back the " in human  # beside every gain
    assert protocol._reached_in(5, 15) and not protocol._reached_in(6, 15) and not protocol._reached_in(None, 15)
    protocol.main(["--from-json", str(out)])  # the same tables from the saved JSON, nothing trained
    assert capsys.readouterr().out.strip() == human.strip()
    payload = json.loads(first)
    assert payload["bench"] == "protocol" and json.loads(out.read_text()) == payload  # dicts compare unordered
    sp = payload["spaces"]["vit"]
    assert sp["data"] == "digits" and sp["study"]["steps"] > 0 and sp["study"]["warm_strength"] == 0.25
    assert sp["pretrain"]["cpu_hours"] > 0 and sp["pretrain"]["stages"] >= 1
    assert [b["steps"] for b in sp["budgets"]] == [4, 8]
    assert {a["class"] for a in sp["archs"]} == set(CLASSES) and len(sp["archs"]) == len(CLASSES)
    assert len(sp["pool"]) == 1
    for a in sp["archs"]:
        assert set(a["budgets"]) == {"4", "8"} and a["donor"] == sp["pool"][0]["arch"]
        for b in a["budgets"].values():
            assert set(b["arms"]) == {*protocol.ARMS, "random"}
            assert b["arms"]["random"]["scheme"] in protocol.RANDOM_ARMS
            assert b["best_baseline"] in protocol.BASELINES
            for arm in protocol.ARMS:
                s = b["arms"][arm]
                assert s["lr"] == 1e-3 and s["curve"] and s["curve"][0][0] == 0
                for key in ("step0", "final", "test"):
                    assert set(s[key]) == {"mean", "se", "n", "diverged"}
                    assert s[key]["n"] == 1 and s[key]["se"] is None  # one seed: no standard error
                    assert math.isfinite(s[key]["mean"])
            for h in protocol.HYPERNET_ARMS:
                assert set(b["reach"][h]) == {*protocol.BASELINES, *protocol.RANDOM_ARMS}
                assert b["verdict"][h] in ("win", "loss") and b["verdict_test"][h] in ("win", "loss")
                assert math.isfinite(b["gain"][h])
        for h in protocol.HYPERNET_ARMS:
            be = a["break_even"][h]
            assert be["steps"] == 8 and be["never"] == (be["trials"] is None)  # no study budget: the longest
            assert be["trials"] is None or be["trials"] > 0
    for key in ("4", "8"):
        for cls in CLASSES:
            for h in protocol.HYPERNET_ARMS:
                c = sp["summary"][key]["classes"][cls][h]
                assert c["wins"] + c["losses"] == c["n"] == 1
    for path, value in _finite_numbers(payload):
        assert math.isfinite(value), path
    assert "steps to random" in human and "break-even" in human and "wide_4x" in human and "all, on test" in human
    assert sp["summary"]["8"]["total_test"]["hypernet_full"]["n"] == len(CLASSES)


def test_lr_edge_marks_a_pick_at_the_end_of_a_grid(protocol):
    grid = (1e-3, 3e-3, 1e-2)
    assert protocol.lr_edge(1e-2, grid) == "top" and protocol.lr_edge(1e-3, grid) == "bottom"
    assert protocol.lr_edge(3e-3, grid) is None and protocol.lr_edge(1e-3, (1e-3,)) is None
    arm = {"final": {"mean": 1.5, "se": 0.01}, "lr": 1e-2, "lr_finals": {"0.003": 1.6, "0.01": 1.5}}
    assert protocol._pm_lr(arm) == "1.500 ± 0.010 @0.01 ↑"
    assert protocol._pm_lr({**arm, "lr_finals": {"0.01": 1.5, "0.03": 1.7}}) == "1.500 ± 0.010 @0.01 ↓"
    assert protocol._pm_lr({**arm, "lr_finals": {"0.01": 1.5}}) == "1.500 ± 0.010 @0.01"


def test_pretrain_cost_reads_the_recorded_stages(protocol):
    meta = {"stages": [{"command": "a", "steps": 2000, "cpu_seconds": None},
                       {"command": "b", "steps": 1000, "cpu_seconds": 360.0},
                       {"command": "c", "steps": 1000, "cpu_seconds": 440.0}]}
    cost = protocol.pretrain_cost(meta)
    assert cost["recorded_seconds"] == 800.0 and cost["estimated_seconds"] == pytest.approx(2000 * 800.0 / 2000)
    assert cost["stages"] == 3 and cost["steps"] == 4000 and "estimated" in cost["source"]


def test_parse_shard(protocol):
    assert protocol.parse_shard(None) == (0, 1) and protocol.parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "-1/2", "a/b", "1"):
        with pytest.raises(SystemExit, match="--shard"):
            protocol.parse_shard(bad)


@pytest.mark.slow  # ~15 s on one thread
def test_shards_on_one_cache_add_up_to_the_whole_protocol(protocol, capsys, tmp_path):
    """Two shards train disjoint architectures into one cache; the unsharded rerun trains nothing
    and reports every architecture with the shards' numbers; a changed setting trains afresh."""
    base = ["--quick", "--spaces", "vit", "--classes", "off_grid_width,wide_4x", "--archs-per-class", "2",
            "--cache", str(tmp_path / "cache")]

    def run(*extra):
        protocol.main([*base, *extra])
        return json.loads(capsys.readouterr().out.partition("\n")[0])["spaces"]["vit"]

    shards = [run("--shard", "0/2"), run("--shard", "1/2")]
    names = [[a["arch"] for a in sp["archs"]] for sp in shards]
    assert names[0] and names[1] and not set(names[0]) & set(names[1])
    assert shards[0]["cache"]["misses"] > 0 and shards[1]["cache"]["hits"] >= 1  # the pool, trained by shard 0
    whole = run()
    assert whole["cache"]["misses"] == 0 and whole["cache"]["hits"] > 0
    assert sorted(a["arch"] for a in whole["archs"]) == sorted(names[0] + names[1])
    by_arch = {a["arch"]: a for sp in shards for a in sp["archs"]}
    for a in whole["archs"]:
        for key, b in a["budgets"].items():
            for arm in protocol.ARMS:
                assert b["arms"][arm]["final"] == by_arch[a["arch"]]["budgets"][key]["arms"][arm]["final"]
                assert b["arms"][arm]["curve"] == by_arch[a["arch"]]["budgets"][key]["arms"][arm]["curve"]
    fresh = run("--weight-decay", "0.02")["cache"]  # another TrainConfig: nothing reused
    assert fresh["hits"] == 0 and fresh["misses"] > 0


def test_warm_strength_outside_its_range_is_refused(protocol):
    assert protocol.parse_args(["--warm-strength", "0.25"]).warm_strength == 0.25
    for bad in ("0", "1.5"):
        with pytest.raises(SystemExit, match="--warm-strength: in \\(0, 1\\]"):
            protocol.parse_args(["--warm-strength", bad])


def test_named_architectures_replace_the_held_out_classes(protocol):
    """`--archs`: each DEPTHxWIDTH built as the held-out classes are, filed under `seen_shape` when the
    space could have drawn its every parameter shape (a diagnostic of what meta-training saw)."""
    from nas.unseen import arch_at, shares_shapes_with_space
    from search_spaces import get_space

    args = protocol.parse_args(["--archs", "1x64, 3X128,1x256"])
    assert args.archs == ((1, 64), (3, 128), (1, 256)) and args.classes is None
    space = get_space("vit", image_size=8, channels=1, num_classes=10)
    classes = protocol.named_classes(space, args.archs)
    assert [(c.depth, c.width) for c in classes["seen_shape"]] == [(1, 64), (3, 128)]
    assert [(c.depth, c.width) for c in classes["named"]] == [(1, 256)]
    assert classes["named"][0] == arch_at(space, 1, 256) and not shares_shapes_with_space(classes["named"][0], space)
    for bad in ("1x", "x64", "0x64", "1x64x2", "1x-64", ","):
        with pytest.raises(SystemExit, match="--archs"):
            protocol.parse_args(["--archs", bad])
    with pytest.raises(SystemExit, match="--archs and --classes"):
        protocol.parse_args(["--archs", "1x64", "--classes", "wide_2x"])


def test_a_draw_replaces_the_fixed_held_out_models_with_seeded_random_ones(protocol, capsys):
    """`--draw N --draw-seed S`: the classes' models are `nas.unseen.draw_unseen`'s, not the fixed ones."""
    from nas.unseen import draw_unseen
    from search_spaces import get_space

    payload = protocol.main(["--quick", "--spaces", "vit", "--draw", "1", "--draw-seed", "3",
                             "--classes", "off_grid_width,deep_2x"])
    capsys.readouterr()
    drawn = draw_unseen(get_space("vit", image_size=8, channels=1, num_classes=10), 1, 3)
    assert [(a["class"], a["config"]) for a in payload["spaces"]["vit"]["archs"]] == [
        (cls, drawn[cls][0].to_dict()) for cls in ("off_grid_width", "deep_2x")]
    for bad in (["--draw", "0"], ["--draw", "1", "--archs", "1x64"]):
        with pytest.raises(SystemExit, match="--draw"):
            protocol.parse_args(bad)


def test_a_candidate_checkpoint_is_scored_instead_of_the_shipped_one(protocol, capsys, tmp_path):
    """`--checkpoint`: the arms run with that hypernet (its name in the JSON; cache entries its own);
    a checkpoint of another space is refused by its signature, and it needs a single space."""
    import shutil

    from hypernet import CheckpointError, pretrained_path
    from search_spaces import get_space

    with pytest.raises(SystemExit, match="--checkpoint: give one space"):
        protocol.parse_args(["--checkpoint", "x.safetensors"])
    vit = pretrained_path(get_space("vit", image_size=8, channels=1, num_classes=10).signature())
    candidate = tmp_path / "candidate.safetensors"
    shutil.copyfile(vit, candidate)
    protocol.main(["--quick", "--spaces", "vit", "--archs", "1x32", "--checkpoint", str(candidate),
                   "--budgets", "2", "--pool", "1"])
    sp = json.loads(capsys.readouterr().out.partition("\n")[0])["spaces"]["vit"]
    assert sp["checkpoint"] == "candidate.safetensors" and [a["arch"] for a in sp["archs"]] == ["L1 d32 h8 p2 m2"]
    assert [a["class"] for a in sp["archs"]] == ["seen_shape"]
    gpt2 = pretrained_path(get_space("gpt2", vocab_size=256, context=64).signature())
    with pytest.raises(CheckpointError):
        protocol.main(["--quick", "--spaces", "vit", "--archs", "1x32", "--checkpoint", str(gpt2), "--budgets", "2"])


def _cached_quick_vit(protocol, capsys, tmp_path):
    """A quick one-architecture ViT protocol on one cache: run(*extra flags) -> its JSON for vit."""
    base = ["--quick", "--spaces", "vit", "--archs", "1x32", "--budgets", "2", "--pool", "1",
            "--cache", str(tmp_path / "cache")]

    def run(*extra):
        protocol.main([*base, *extra])
        return json.loads(capsys.readouterr().out.partition("\n")[0])["spaces"]["vit"]

    return run


def test_the_pool_trains_at_its_own_lr_so_an_arms_lr_keeps_the_donors(protocol, capsys, tmp_path):
    """--lr moves the untuned arms only: the inheritance pool is trained at --pool-lr, so a run at
    another --lr reuses the same donors (its cache entry), and another --pool-lr trains new ones."""
    run = _cached_quick_vit(protocol, capsys, tmp_path)
    first = run()
    other_lr = run("--lr", "3e-3")
    assert other_lr["cache"]["hits"] == len(protocol.RANDOM_ARMS) + 1  # the tuned random arms and the pool
    assert other_lr["pool"] == first["pool"]
    other_pool = run("--pool-lr", "3e-3")
    assert other_pool["pool"][0]["arch"] == first["pool"][0]["arch"]
    assert other_pool["pool"][0]["val_loss"] != first["pool"][0]["val_loss"]


def test_a_candidate_reuses_the_baselines_runs_and_trains_only_its_own(protocol, capsys, tmp_path):
    """The cache keys only the hypernet arms by the checkpoint: scoring a candidate beside the
    shipped hypernet retrains its two arms, not the baselines nor the inheritance pool."""
    import torch

    from hypernet import load_checkpoint, pretrained_path, save_checkpoint
    from hypernet.checkpoint import read_header
    from search_spaces import get_space

    shipped = pretrained_path(get_space("vit", image_size=8, channels=1, num_classes=10).signature())
    hn, _ = load_checkpoint(shipped)
    with torch.no_grad():
        next(hn.parameters()).mul_(1.01)  # another hypernet, another sha
    candidate = tmp_path / "candidate.safetensors"
    save_checkpoint(hn, candidate, read_header(shipped)["meta"])
    run = _cached_quick_vit(protocol, capsys, tmp_path)
    first = run()
    assert first["cache"]["hits"] == 0
    second = run("--checkpoint", str(candidate))
    n_hypernet = len(protocol.HYPERNET_ARMS)
    assert second["cache"]["misses"] == n_hypernet  # one seed, one lr, one budget
    assert second["cache"]["hits"] == len(protocol.ARMS) - n_hypernet + 1  # the baselines and the pool
    a, b = first["archs"][0]["budgets"]["2"]["arms"], second["archs"][0]["budgets"]["2"]["arms"]
    assert all(a[arm]["final"] == b[arm]["final"] for arm in protocol.ARMS if arm not in protocol.HYPERNET_ARMS)
