"""Search spaces: Optuna suggest(), seeded sample(), the paper's ViTs-1K / GPTs-1K rules."""
import random

import optuna
import pytest
import torch

from search_spaces import ConfigError, GPT2Config, GPT2Space, ViTConfig, ViTSpace, build_model, get_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _vit_paper_rule(depth):
    return (128, 256) if depth > 5 else (256, 384) if depth >= 4 else (384, 512)


def _vit_paper_heads(width):
    if width % 12 == 0:
        return {3, 6, 12}
    if width % 6 == 0:
        return {3, 6}
    if width % 3 == 0:
        return {3}
    return {4, 8}


def _gpt_paper_rule(depth):
    return (72, 176) if depth > 5 else (128, 176) if depth >= 4 else (176, 256)


def _in_vit_space(space: ViTSpace, c: ViTConfig) -> None:
    assert space.contains(c)
    assert space.depth[0] <= c.depth <= space.depth[1]
    assert c.patch_size in space.patch_sizes and c.mlp_ratio in space.mlp_ratios
    if space.paper_width_rule:
        lo, hi = _vit_paper_rule(c.depth)
        assert lo <= c.width <= hi and c.width % 32 == 0
        assert c.heads in _vit_paper_heads(c.width)
    else:
        lo, hi, step = space.width
        assert lo <= c.width <= hi and (c.width - lo) % step == 0
        assert c.heads in space.heads and c.width % c.heads == 0


def _in_gpt_space(space: GPT2Space, c: GPT2Config) -> None:
    assert space.contains(c)
    assert space.depth[0] <= c.depth <= space.depth[1]
    assert c.heads in space.heads and c.width % c.heads == 0
    assert c.mlp_ratio in space.mlp_ratios and c.tied_embeddings in space.tied_embeddings
    lo, hi, step = space.width
    if space.paper_width_rule:
        lo, hi = _gpt_paper_rule(c.depth)
    assert lo <= c.width <= hi and c.width % step == 0


SPACES = [
    (ViTSpace(), _in_vit_space),
    (ViTSpace.vits_1k(), _in_vit_space),
    (GPT2Space(), _in_gpt_space),
    (GPT2Space.gpts_1k(), _in_gpt_space),
]


@pytest.mark.parametrize("space, check", SPACES, ids=["vit", "vits_1k", "gpt2", "gpts_1k"])
@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_suggest_gives_valid_configs_within_ranges(space, check, sampler):
    sampler = (optuna.samplers.RandomSampler(seed=0) if sampler == "random"
               else optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    study = optuna.create_study(sampler=sampler)  # in-memory storage
    configs = []

    def objective(trial):
        config = space.suggest(trial)
        configs.append(config)
        return config.depth * config.width  # anything deterministic, so TPE has something to model

    study.optimize(objective, n_trials=25)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for c in configs:
        check(space, c)
    assert len({c.width for c in configs}) > 1 and len({c.depth for c in configs}) > 1


@pytest.mark.parametrize("space, check", SPACES, ids=["vit", "vits_1k", "gpt2", "gpts_1k"])
def test_sample_is_seeded_and_within_ranges(space, check):
    a = [space.sample(random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng1, rng2 = random.Random(1), random.Random(1)
    seq1 = [space.sample(rng1) for _ in range(200)]
    seq2 = [space.sample(rng2) for _ in range(200)]
    assert seq1 == seq2
    for c in seq1:
        check(space, c)
    assert {c.depth for c in seq1} == set(range(space.depth[0], space.depth[1] + 1))


@pytest.mark.parametrize("space, check", SPACES, ids=["vit", "vits_1k", "gpt2", "gpts_1k"])
def test_sample_at_a_given_depth(space, check):
    lo, hi = space.depth
    rng = random.Random(0)
    for depth in (lo, hi):
        drawn = [space.sample(rng, depth=depth) for _ in range(50)]
        assert {c.depth for c in drawn} == {depth} and len({c.width for c in drawn}) > 1
        for c in drawn:
            check(space, c)
    for bad in (lo - 1, hi + 1, 2.0, True):
        with pytest.raises(ConfigError, match=rf"depth.*\[{lo}, {hi}\]"):
            space.sample(rng, depth=bad)


@pytest.mark.parametrize("space", [s for s, _ in SPACES], ids=["vit", "vits_1k", "gpt2", "gpts_1k"])
def test_params_of_is_the_inverse_of_suggest(space):
    """What an enqueued trial (e.g. a hypernet-screened architecture) relies on."""
    rng = random.Random(3)
    configs = {space.sample(rng) for _ in range(300)}
    for c in configs:
        assert space.suggest(optuna.trial.FixedTrial(space.params_of(c))) == c
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    target = sorted(configs, key=lambda c: (c.depth, c.width))[-1]
    study.enqueue_trial(space.params_of(target))
    study.optimize(lambda t: space.suggest(t).width, n_trials=1)
    assert space.suggest(optuna.trial.FixedTrial(study.trials[0].params)) == target


@pytest.mark.parametrize("space, outside", [
    (ViTSpace(), ViTConfig(image_size=8, channels=1, num_classes=10, depth=7, width=64, heads=4)),
    (ViTSpace(), ViTConfig(image_size=8, channels=1, num_classes=10, depth=2, width=40, heads=4)),
    (ViTSpace(), ViTConfig(image_size=16, channels=1, num_classes=10, depth=2, width=64, heads=4)),
    (GPT2Space(), GPT2Config(vocab_size=256, context=64, depth=2, width=64, heads=16)),
    (GPT2Space(), GPT2Config(vocab_size=512, context=64, depth=2, width=64, heads=4)),
], ids=["vit-depth", "vit-width", "vit-image", "gpt2-heads", "gpt2-vocab"])
def test_params_of_refuses_configs_outside_the_space(space, outside):
    with pytest.raises(ConfigError, match="config"):
        space.params_of(outside)


def test_paper_presets_match_the_papers_ranges():
    vits = ViTSpace.vits_1k()
    seen = [vits.sample(random.Random(s)) for s in range(300)]
    assert {(c.image_size, c.channels, c.num_classes) for c in seen} == {(32, 3, 10)}
    assert {c.patch_size for c in seen} == {2, 4} and {c.mlp_ratio for c in seen} == {4.0}
    assert {c.width for c in seen if c.depth == 3} <= {384, 416, 448, 480, 512}
    assert {c.heads for c in seen if c.width == 384} <= {3, 6, 12}
    assert {c.heads for c in seen if c.width in (160, 224, 256)} <= {4, 8}
    gpts = GPT2Space.gpts_1k()
    seen = [gpts.sample(random.Random(s)) for s in range(300)]
    assert {(c.vocab_size, c.context, c.heads, c.tied_embeddings) for c in seen} == {(50257, 1024, 8, False)}
    assert max(c.width for c in seen if c.depth >= 6) <= 176


def test_paper_sized_models_stay_small():
    """ViTs-1K is <= 10M params and GPTs-1K <= 30M "in practice" (LoGAH §4): check the largest corners."""
    with torch.device("meta"):
        vit = build_model(ViTConfig(image_size=32, channels=3, patch_size=2, depth=3, width=512, heads=8)).num_params()
        gpt = build_model(GPT2Config(vocab_size=50257, context=1024, depth=3, width=256, heads=8,
                                     tied_embeddings=False)).num_params()
    assert vit <= 10_000_000 and gpt <= 30_000_000


def test_get_space_passes_ranges_and_builds():
    space = get_space("vit", image_size=16, channels=3, num_classes=5, patch_sizes=(4,))
    assert space.signature() == {"space": "vit", "image_size": 16, "channels": 3, "num_classes": 5}
    config = space.sample(random.Random(0))
    model = space.build(config)
    assert model(torch.randn(2, 3, 16, 16))[0].shape == (2, 5)
    gpt = get_space("gpt2", vocab_size=100, context=32)
    assert gpt.signature() == {"space": "gpt2", "vocab_size": 100, "context": 32}
    assert not gpt.contains(GPT2Config(vocab_size=256, context=32))
    assert gpt.contains(gpt.sample(random.Random(0)))


@pytest.mark.parametrize("name, kwargs, field", [
    ("vit", dict(patch_sizes=(3,)), "patch_sizes"),
    ("vit", dict(patch_sizes=()), "patch_sizes"),
    ("vit", dict(depth=(0, 3)), "depth"),
    ("vit", dict(depth=(4, 3)), "depth"),
    ("vit", dict(width=(64, 32, 16)), "width"),
    ("vit", dict(heads=(5,)), "heads"),
    ("vit", dict(width=(30, 60, 10), heads=(3,)), "heads"),  # 40 has no allowed head count
    ("vit", dict(image_size=0), "image_size"),
    ("gpt2", dict(heads=()), "heads"),
    ("gpt2", dict(heads=(7,)), "heads"),
    ("gpt2", dict(vocab_size=-1), "vocab_size"),
    ("gpt2", dict(context=0), "context"),
    ("gpt2", dict(tied_embeddings=()), "tied_embeddings"),
    ("gpt2", dict(width=(0, 32, 8)), "width"),
])
def test_invalid_space_names_the_field(name, kwargs, field):
    with pytest.raises(ConfigError) as err:
        get_space(name, **kwargs)
    assert err.value.field == field


@pytest.mark.parametrize("space", [s for s, _ in SPACES], ids=["vit", "vits_1k", "gpt2", "gpts_1k"])
def test_params_are_named_and_valued_as_users_read_them(space):
    """The Optuna CLI, optuna-dashboard and importances show trial.params: the head count itself,
    never an index; a categorical keeps one fixed choice list per parameter name (else Optuna raises)."""
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    configs = {}
    study.optimize(lambda t: configs.setdefault(t.number, space.suggest(t)).width, n_trials=40)
    choices: dict[str, tuple] = {}
    for t in study.trials:
        c = configs[t.number]
        heads = [k for k in t.params if k.startswith("heads")]
        assert len(heads) == 1 and t.params[heads[0]] == c.heads
        assert "heads_index" not in t.params and t.params["depth"] == c.depth and t.params["width"] == c.width
        for name, dist in t.distributions.items():
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                assert choices.setdefault(name, dist.choices) == dist.choices
        assert space.params_of(c) == t.params
    if not space.paper_width_rule:  # every head count divides every width of the default grids
        assert {k for t in study.trials for k in t.params if k.startswith("heads")} == {"heads"}


def test_vits_1k_heads_params_name_the_allowed_head_counts():
    vits = ViTSpace.vits_1k()
    assert vits.params_of(ViTConfig(image_size=32, channels=3, patch_size=2, depth=3, width=384, heads=6))[
        "heads_of_3_6_12"] == 6
    assert vits.params_of(ViTConfig(image_size=32, channels=3, patch_size=4, depth=3, width=416, heads=8))[
        "heads_of_4_8"] == 8
    assert GPT2Space.gpts_1k().params_of(GPT2Config(vocab_size=50257, context=1024, depth=3, width=200, heads=8,
                                                    tied_embeddings=False))["heads"] == 8


@pytest.mark.parametrize("space", [s for s, _ in SPACES], ids=["vit", "vits_1k", "gpt2", "gpts_1k"])
def test_round_trip_over_every_config_of_a_depth(space):
    """suggest(params_of(c)) == c for every width x head count at the smallest and largest depth."""
    rng = random.Random(0)
    for depth in space.depth:
        for c in {space.sample(rng, depth=depth) for _ in range(400)}:
            assert space.suggest(optuna.trial.FixedTrial(space.params_of(c))) == c


def test_importances_name_the_head_count():
    """What `optuna` importances (and our dashboard's) list: `heads`, not an index into divisors."""
    space = ViTSpace()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (c := space.suggest(t)).width / c.heads + c.depth, n_trials=30)
    importances = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    assert {"heads", "width", "depth", "patch_size", "mlp_ratio"} == set(importances)
