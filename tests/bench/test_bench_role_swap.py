"""bench/role_swap.py: the grouping and the swap on real models' parameter names, and one quick run
whose swapped starts must train to other losses than the starts they came from."""
from __future__ import annotations

import pytest
import torch


def test_a_group_is_one_module_in_every_layer(role_swap):
    assert role_swap.param_group("blocks.3.attn.c_proj.weight") == "blocks.attn.c_proj"
    assert role_swap.param_group("blocks.0.attn.c_proj.bias") == "blocks.attn.c_proj"
    assert role_swap.param_group("pos_embed") == "pos_embed"
    assert role_swap.param_group("cls_token") == "cls_token"
    assert role_swap.param_group("lm_head.weight") == "lm_head"


def test_swapped_takes_exactly_the_group_from_the_donor(role_swap):
    from nas.data import load_dataset
    from nas.unseen import arch_at
    from search_spaces import build_model, get_space

    dataset = load_dataset("digits")
    config = arch_at(get_space("vit", **dataset.space_options()), 2, 32)
    base = dict(build_model(config, seed=0).named_parameters())
    donor = {k: v + 1 for k, v in base.items()}
    out = role_swap.swapped(base, donor, "blocks.attn.c_proj")
    moved = {k for k in base if not torch.equal(out[k], base[k])}
    assert moved == {f"blocks.{i}.attn.c_proj.{t}" for i in (0, 1) for t in ("weight", "bias")}
    assert all(torch.equal(out[k], donor[k]) for k in moved)
    groups = {role_swap.param_group(k) for k in base}
    every = base
    for g in groups:
        every = role_swap.swapped(every, donor, g)
    assert all(torch.equal(every[k], donor[k]) for k in base)


def test_a_quick_run_trains_every_swap_and_rejects_bad_input(role_swap, tmp_path, capsys):
    out = tmp_path / "swap.json"
    payload = role_swap.main(["--archs", "1x32", "--steps", "3", "--seeds", "0,1", "--groups",
                              "pos_embed,blocks.mlp.c_proj", "--out", str(out), "--markdown"])
    finals = payload["rows"][0]["finals"]
    assert set(finals) == {"P", "O", "P, pos_embed from O", "O, pos_embed from P",
                           "P, blocks.mlp.c_proj from O", "O, blocks.mlp.c_proj from P"}
    assert all(torch.isfinite(torch.tensor(v[0])) for v in finals.values())
    assert finals["P"][0] < finals["O"][0] - 0.5  # three steps from the prediction vs from random init
    assert finals["P, pos_embed from O"][0] != pytest.approx(finals["P"][0], abs=1e-4)
    assert "| pos_embed |" in capsys.readouterr().out and out.exists()
    with pytest.raises(SystemExit, match="ln_9"):
        role_swap.main(["--archs", "1x32", "--steps", "1", "--seeds", "0", "--groups", "ln_9"])
    with pytest.raises(SystemExit, match="--steps"):
        role_swap.main(["--archs", "1x32", "--steps", "many"])
    with pytest.raises(SystemExit, match="--other"):
        role_swap.main(["--archs", "1x32", "--other", "no_such_init"])
