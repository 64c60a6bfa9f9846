"""nas.config: the Hydra defaults and the dataclasses that check them agree with what they configure."""
import subprocess
import sys
from dataclasses import asdict, fields

import pytest

from nas.config import HypernetConfig, PretrainConfig, StudyConfig, compose, compose_dict, group_options
from nas.recipe import Recipe, RecipeOptions
from search_spaces import ConfigError


def test_pretrain_block_is_the_recipe_without_its_seed_and_the_yaml_lists_its_defaults():
    # the defaults are written once, in nas/recipe.py; nas/conf/config.yaml lists them for users
    assert issubclass(PretrainConfig, RecipeOptions) and issubclass(Recipe, RecipeOptions)
    assert {f.name for f in fields(PretrainConfig)} - {"out", "init"} == {f.name for f in fields(Recipe)} - {"seed"}
    composed = compose([]).pretrain
    assert composed == PretrainConfig()
    assert set(compose_dict([])["pretrain"]) == {f.name for f in fields(PretrainConfig)}  # the yaml lists every key
    assert asdict(composed.recipe(seed=3)) == {**asdict(Recipe()), "seed": 3}


def test_pretrain_errors_name_the_config_key_and_recipe_errors_the_argument():
    with pytest.raises(ConfigError, match=r"^pretrain\.unroll_lr=0\.5 is invalid: allowed a number in \(0\.0, 0\.3\]"):
        compose(["pretrain.unroll_lr=0.5"])
    with pytest.raises(ConfigError, match=r"^pretrain\.steps=0 is invalid: allowed an integer >= 1"):
        PretrainConfig(steps=0)
    with pytest.raises(ConfigError, match=r"^steps=0 is invalid: allowed an integer >= 1"):
        Recipe(steps=0)
    with pytest.raises(ConfigError, match=r"^seed=777777 is invalid"):
        compose([]).pretrain.recipe(seed=777_777)


def test_group_defaults_are_the_dataclass_defaults():
    assert compose([]).hypernet == HypernetConfig()
    assert compose([]).study == StudyConfig()


def test_each_space_has_its_default_lr_range_that_study_files_and_overrides_replace():
    assert compose(["space=vit"]).study.lr == (3e-4, 3e-3)
    assert compose(["space=gpt2", "data=pytext"]).study.lr == (3e-4, 1e-2)
    assert compose(["space=gpt2", "data=pytext", "study=quick"]).study.lr == (1e-3, 3e-3)
    assert compose(["space=gpt2", "data=pytext", "study.lr=[1e-4,2e-3]"]).study.lr == (1e-4, 2e-3)
    assert group_options("study_lr") == group_options("space")  # one range per space


def test_the_yaml_storage_defaults_are_the_one_default():
    from nas.storage import DEFAULT_ARTIFACTS, DEFAULT_STORAGE

    d = compose_dict([])
    assert (d["storage"], d["artifacts_dir"]) == (DEFAULT_STORAGE, DEFAULT_ARTIFACTS)


def test_hypernet_variants_share_one_file_that_is_not_a_choice():
    assert group_options("hypernet") == ["base", "large", "small", "tiny"]
    shared = {k: v for k, v in compose_dict(["hypernet=tiny"])["hypernet"].items()
              if k not in ("variant", "refit_every", "refit_steps", "lease_ttl_s")}
    for variant in group_options("hypernet"):
        h = compose_dict([f"hypernet={variant}"])["hypernet"]
        assert h["variant"] == variant and set(h) == {f.name for f in fields(HypernetConfig)}
        assert {k: h[k] for k in shared} == shared
    with pytest.raises(ConfigError, match=r"hypernet='_shared' is invalid: allowed one of \['base', 'large'"):
        compose(["hypernet=_shared"])


def test_config_is_validated_without_importing_the_hypernet_package():
    code = ("import sys, nas.config; nas.config.compose([]); "
            "print(sorted(m for m in sys.modules if m.partition('.')[0] == 'hypernet'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_refit_max_share_defaults_to_no_cap_and_is_validated():
    assert compose([]).hypernet.refit_max_share == 1.0
    assert compose(["hypernet.refit_max_share=0.25"]).hypernet.refit_max_share == 0.25
    for bad, shown in (("0", "0"), ("1.5", "1.5"), ("true", "True")):
        with pytest.raises(ConfigError, match=rf"^hypernet\.refit_max_share={shown} is invalid: allowed a number in \(0\.0, 1\.0\]"):
            compose([f"hypernet.refit_max_share={bad}"])


def test_worker_restarts_defaults_to_3_and_is_validated():
    assert compose([]).worker_restarts == 3 == compose_dict([])["worker_restarts"]
    assert compose(["worker_restarts=0"]).worker_restarts == 0
    with pytest.raises(ConfigError) as e:
        compose(["worker_restarts=-1"])
    assert e.value.field == "worker_restarts"


def test_vit_ranges_are_checked_against_the_data_sets_own_image_size():
    """Patch sizes must divide the image the data set will deliver: 28 for mnist5k, the option for
    imagefolder (checked before any image is read)."""
    from nas.config import compose

    assert compose(["data=mnist5k", "space.patch_sizes=[4,7]"]).space["patch_sizes"] == [4, 7]
    assert compose(["data=imagefolder", "data.options.image_size=24", "space.patch_sizes=[4,6]"])
    for overrides, size in ((["data=mnist5k", "space.patch_sizes=[3]"], 28),
                            (["data=imagefolder", "data.options.image_size=24", "space.patch_sizes=[5]"], 24)):
        with pytest.raises(ConfigError) as err:
            compose(overrides)
        assert err.value.field == "space.patch_sizes" and f"image_size={size}" in str(err.value)
