"""Export of a study's best (or chosen) trial with provenance."""
from __future__ import annotations

import json

import pytest
import torch
from _nas_tiny import tiny_config
from optuna.trial import TrialState

from nas.artifacts import export_trial, load_trial_model
from nas.export import load_exported
from nas.study import best_trial, open_session, run_trials
from search_spaces import ConfigError


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("artifacts")
    session = open_session(tiny_config(tmp, "n_trials=2", "study.control_fraction=0.0"), create=True)
    run_trials(session)
    return session, tmp


def test_export_best_trial_reloads_identically_with_provenance(finished):
    session, tmp = finished
    best = best_trial(session.study)
    out = export_trial(session.storage, session.study, tmp / "exports")
    assert out.name == f"vit-digits-trial{best.number}"
    model, config = load_exported(out)
    original = load_trial_model(best, session.artifact_store)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(model.eval()(x)[0], original(x)[0])
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["study"] == "vit-digits" and prov["trial"] == best.number and prov["metric"] == "val_loss"
    assert prov["value"] == pytest.approx(best.value) and prov["hypernet_version"] == 0
    assert len(prov["hypernet"]["sha256"]) == 64 and prov["seed"] == 0 and prov["data"]["name"] == "digits"
    assert prov["warm_strength"] == session.cfg.hypernet.warm_strength == 0.5
    # the study attr is compact; provenance holds the whole training recipe, defaults included
    assert prov["train"]["steps"] == session.cfg.study.steps and prov["train"]["grad_clip"] == 1.0


def test_export_reports_test_metrics_on_the_test_split_and_records_them(finished):
    """Selection uses val; the export scores the model on the whole test split and the study
    records it for the dashboard (which reads the storage read-only)."""
    from nas.artifacts import test_metrics
    from nas.attrs import STUDY_TEST_METRICS
    from nas.train_loop import evaluate

    session, tmp = finished
    best = best_trial(session.study)
    out = export_trial(session.storage, session.study, tmp / "exports", dataset=session.dataset)
    test = json.loads((out / "provenance.json").read_text())["test"]
    assert test["split"] == "test" and test["examples"] == session.dataset.num_examples("test") == 180
    model = load_trial_model(best, session.artifact_store)
    expected = evaluate(model, session.dataset, batch_size=256, batches=None, split="test")
    assert test["loss"] == pytest.approx(expected["test_loss"]) and test["accuracy"] == expected["test_accuracy"]
    assert test["loss"] != pytest.approx(evaluate(model, session.dataset, batch_size=256, batches=None)["val_loss"])
    assert session.study.user_attrs[STUDY_TEST_METRICS][str(best.number)] == test
    again = test_metrics(model, session.dataset)
    assert again["loss"] == pytest.approx(test["loss"]) and again["accuracy"] == test["accuracy"]
    assert "Test" in (out / "README.md").read_text()  # the model card shows it


def test_export_a_chosen_trial_and_reject_a_missing_one(finished):
    session, tmp = finished
    first = session.study.get_trials(states=(TrialState.COMPLETE,))[0]
    out = export_trial(session.storage, session.study, tmp / "exports", trial_number=first.number)
    assert out.name.endswith(f"trial{first.number}")
    with pytest.raises(ConfigError) as info:
        export_trial(session.storage, session.study, tmp / "exports", trial_number=99)
    assert info.value.field == "trial"


def test_default_choice_is_the_best_warm_started_trial():
    """Control trials only measure the warm-start gain: the export defaults to the best warm one,
    even when a control trial has a lower loss, and to the best trial when none is warm."""
    import optuna

    from nas.artifacts import select_trial
    from nas.attrs import WARM_START, WEIGHTS

    def study(*trials: tuple[float, bool]) -> optuna.Study:
        s = optuna.create_study()
        for value, warm in trials:
            s.add_trial(optuna.trial.create_trial(value=value, user_attrs={WARM_START: warm, WEIGHTS: "x"}))
        return s

    assert select_trial(study((0.5, True), (0.1, False), (0.3, True), (0.2, False))).number == 2
    assert select_trial(study((0.5, False), (0.1, False))).number == 1


def test_exported_trial_loads_in_transformers_with_its_processor_and_card(finished):
    transformers = pytest.importorskip("transformers")
    session, tmp = finished
    best = best_trial(session.study)
    out = export_trial(session.storage, session.study, tmp / "exports-hf")
    original = load_trial_model(best, session.artifact_store)
    dataset = session.dataset  # the study's data options: its train statistics
    raw = dataset._images["val"][:4]
    processor = transformers.AutoImageProcessor.from_pretrained(out)
    pixels = processor([im.permute(1, 2, 0).numpy() for im in raw], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixels, dataset._normalise(raw), atol=1e-5, rtol=0)
    hf = transformers.AutoModelForImageClassification.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(pixel_values=pixels).logits, original(pixels)[0], atol=1e-4, rtol=0)
    card = (out / "README.md").read_text()
    assert f"trial {best.number}" in card and "| val_loss |" in card and "version 0" in card
    assert "AutoImageProcessor" in card and "load_exported" in card
