"""A tiny study for the nas tests: seconds per trial, random-init LoGAH-tiny, sqlite in tmp."""
from __future__ import annotations

from pathlib import Path

TINY = [
    "study=quick", "study.steps=4", "study.eval_every=2", "study.eval_batches=1", "study.warmup_steps=1",
    "study.batch_sizes=[16]", "study.n_startup_trials=0", "space.depth=[1,2]", "space.width=[16,32,16]",
    "space.heads=[2]", "space.patch_sizes=[4]", "space.mlp_ratios=[2.0]", "hypernet.checkpoint=none",
    "hypernet.refit_every=0", "hypernet.refit_steps=2", "hypernet.refit_batch_size=8",
    "hypernet.heldout_archs=2", "hypernet.heldout_best=1", "hypernet.distill_trials=2", "hypernet.promote_steps=0",
    "device=cpu",
]


def tiny_overrides(tmp: Path, *extra: str) -> list[str]:
    return [*TINY, f"storage=sqlite:///{tmp}/study.db", f"artifacts_dir={tmp}/artifacts",
            f"export_dir={tmp}/exports", *extra]


def tiny_config(tmp: Path, *extra: str):
    from nas.config import compose

    return compose(tiny_overrides(tmp, *extra))


def tiny_gpt2_config(tmp: Path, *extra: str):
    """GPT-2 on a 100 kB slice of pytext with 16-token context."""
    from nas.config import compose

    vit_only = ("space.patch_sizes", "space.mlp_ratios", "space.depth", "space.width", "space.heads")
    base = [o for o in tiny_overrides(tmp) if not o.startswith(vit_only)]
    return compose([*base, "space=gpt2", "data=pytext", "data.options.max_bytes=100000", "data.options.context=16",
                    "space.context=16", "space.width=[16,16,16]", "space.depth=[1,1]", "space.heads=[2]",
                    "space.mlp_ratios=[2.0]", *extra])
