"""bench/draw_luck.py: the other anchored draws and the shrink-and-perturb start on real models, and
one quick run that trains every start and rejects bad input."""
from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture(scope="module")
def vit(protocol):
    """The shipped ViT hypernet and a two-layer model of its space."""
    from nas.unseen import arch_at

    run = protocol.study_training("vit", checkpoint=None, strength=None, steps="study", lr=1e-3, batch_size=32)
    return run.hn, arch_at(run.space, 2, 48)


def test_another_anchor_seed_is_another_draw_of_the_same_init(draw_luck, vit):
    from nas.safety import init_model

    hn, config = vit
    own = hn.config
    shipped = dict(init_model(hn, config, 0).named_parameters())
    other = dict(draw_luck.anchored_init(hn, config, own.anchor_seed + 1, 0).named_parameters())
    assert hn.config is own  # untouched
    for name, w in shipped.items():
        if w.dim() >= 2:
            assert not torch.equal(w, other[name]), name
            assert other[name].std().item() == pytest.approx(w.std().item(), rel=0.35), name
        else:
            assert torch.equal(w, other[name]), name  # vectors keep their standard init


def test_perturbed_mixes_matrices_and_moves_vectors(draw_luck, vit):
    from search_spaces import build_model

    hn, config = vit
    pred = hn.apply(build_model(config, seed=0))
    fresh = build_model(config, seed=1)
    before = {k: v.detach().clone() for k, v in fresh.named_parameters()}
    out = dict(draw_luck.perturbed(pred, fresh, 0.6).named_parameters())
    p = dict(pred.named_parameters())
    for name, w in out.items():
        want = (0.6 * p[name] + 0.8 * before[name] if w.dim() >= 2
                else before[name] + 0.6 * (p[name] - before[name]))
        assert torch.allclose(w, want, atol=1e-6), name


def test_a_quick_run_trains_every_start_and_rejects_bad_input(draw_luck, tmp_path, capsys):
    out = tmp_path / "draws.json"
    payload = draw_luck.main(["--archs", "1x32", "--steps", "3", "--draws", "2", "--perturb", "0.7",
                              "--out", str(out), "--markdown"])
    row = payload["rows"][0]
    assert set(row["runs"]) == set(draw_luck.STARTS)
    assert all(len(v) == 2 and all(math.isfinite(x) for x in v) for v in row["runs"].values())
    assert row["runs"]["anchored"] != row["runs"]["shipped W0"]  # other draws
    assert row["finals"]["warm"][0] < row["finals"]["fresh"][0] - 0.5  # three steps from the prediction
    assert 0 <= row["shipped_rank"] <= 2
    assert "| L1 d32" in capsys.readouterr().out and out.exists()
    with pytest.raises(SystemExit, match="--draws"):
        draw_luck.main(["--archs", "1x32", "--draws", "1"])
    with pytest.raises(SystemExit, match="--perturb"):
        draw_luck.main(["--archs", "1x32", "--perturb", "1"])
