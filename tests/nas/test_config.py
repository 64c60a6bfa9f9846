"""nas.config: the Hydra defaults and the dataclasses that check them agree with what they configure."""
from dataclasses import asdict, fields

from hypernet.pretrain import Recipe
from nas.config import PretrainConfig, compose


def test_pretrain_defaults_are_the_recipe_defaults_in_all_three_places():
    # nas.config cannot import the hypernet package to read them (it is loaded lazily), so the
    # numbers are written three times: Recipe, PretrainConfig and nas/conf/config.yaml
    composed = compose([]).pretrain
    assert composed == PretrainConfig()
    shared = {f.name for f in fields(Recipe)} & {f.name for f in fields(PretrainConfig)}
    assert shared == {f.name for f in fields(Recipe)} - {"seed"}  # the seed is the study's top-level one
    assert {k: v for k, v in asdict(PretrainConfig()).items() if k in shared} == \
           {k: v for k, v in asdict(Recipe()).items() if k in shared}
