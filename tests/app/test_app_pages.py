"""Every page through Streamlit's AppTest: content, empty states, errors, and no writes."""
import shutil

import optuna
import pytest
from streamlit.testing.v1 import AppTest

from _apptest import MAIN, digest

TABS = ["Overview", "Warm start vs random", "Trials", "Hypernet versions", "Best model & export"]


def run(page: str = "studies", study: str | None = None, tab: str | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=90)
    if page != "studies":
        at.switch_page(f"views/{page}.py")
    if study is not None:
        at.query_params["study"] = study
    if tab is not None:
        at.session_state["tab"] = tab
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def test_studies_page_lists_studies(demo, app_env):
    app_env(demo["url"], demo["artifacts"])
    at = run()
    assert at.title[0].value == "Studies"
    assert len(at.dataframe) == 1
    df = at.dataframe[0].value
    assert sorted(df["study"]) == ["legacy", "vit-digits"]
    assert "2 studies" in texts(at.caption) and not at.error


def test_no_storage_configured(app_env):
    app_env(None)
    at = run()
    assert "No storage given" in texts(at.error)


def test_unreachable_storage_shows_masked_url(app_env):
    app_env("postgresql+psycopg://alice:s3cret@127.0.0.1:1/optuna")
    for page in ("studies", "study"):
        at = run(page)
        message = texts(at.error)
        assert "Storage unavailable" in message and "alice:***@127.0.0.1:1" in message
        assert "s3cret" not in message + texts(at.caption) + texts(at.code)


def test_missing_sqlite_file(app_env, tmp_path):
    app_env(f"sqlite:///{tmp_path / 'missing.db'}")
    at = run()
    assert "no study database at" in texts(at.error)
    assert not (tmp_path / "missing.db").exists()  # read-only: not even created


def test_storage_without_studies(app_env, tmp_path):
    import optuna

    optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'empty.db'}").engine.dispose()  # tables, no study
    app_env(f"sqlite:///{tmp_path / 'empty.db'}")
    assert "No studies" in texts(run().info)
    assert "No studies" in texts(run("study").info)


@pytest.mark.parametrize("tab,n_charts", [("Overview", 2), ("Warm start vs random", 3), ("Hypernet versions", 2)])
def test_study_chart_tabs(demo, app_env, tab, n_charts):
    app_env(demo["url"], demo["artifacts"])
    at = run("study", "vit-digits", tab)
    assert at.title[0].value == "vit-digits"
    assert {m.label for m in at.metric} >= {"Trials", "Completed", "Best value", "Warm-started"}
    assert charts(at) == n_charts and not at.error and not at.warning
    if tab == "Warm start vs random":
        assert at.number_input[0].label == "Target val loss"
        labels = {m.label for m in at.metric}
        assert {"Loss at step 0 (warm)", "Val-loss AUC (warm)", "Steps to target (warm)"} <= labels
        gain = at.table[0].value
        assert list(gain.columns) == ["warm", "random", "gain"] and gain.loc["trials", "gain"] == "—"
    if tab == "Hypernet versions":
        table = at.dataframe[0].value
        assert list(table["version"]) == [0, 1, 2, 3]
        assert {"refit_seconds", "note", "promoted", "warm_trials", "gain", "step0_gain", "warm_final",
                "control_final"} <= set(table.columns)
        assert list(table["refit_seconds"]) == [3.5, 7.5, 11.5, 15.5]
        assert list(table["warm_trials"] > 0) == [True, True, False, True]  # v2 was not promoted: no trial used it
        assert table["gain"].isna().tolist() == [False, False, True, False]
        rejected = table["note"].iloc[2]
        assert rejected.startswith("refit of v1") and "not promoted: val loss after 20" in rejected
        captions = texts(at.caption)
        assert "Gain in median final val loss grew from " in captions and "(v3, " in captions
        assert "No finished warm trial started from v2 (not promoted" in captions
        study = optuna.load_study(study_name="vit-digits", storage=demo["url"])
        trial_s = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials
                      if t.datetime_start and t.datetime_complete)
        share = f"{100 * 34.5 / (34.5 + trial_s):.0f} %"
        assert (f"4 versions: 3 refits, 2 promoted, 34.5 s of refitting in all, {share} of refit + trial seconds "
                "(v0 set up in 3.5 s).") in captions
        assert "Startup trials: the best 4 of 16 architectures scored by hypernet v0" in captions
        notes = texts(at.expander[0].markdown)
        assert at.expander[0].label.startswith("Where each version came from")
        assert "**v0** (promoted, 3.5 s): pretrained logah" in notes and "not promoted: val loss after 20" in notes


def widget(elements, label: str):
    return next(e for e in elements if e.label == label)


def test_trials_tab_filters_pages_and_detail(demo, app_env):
    app_env(demo["url"], demo["artifacts"])
    at = run("study", "vit-digits", "Trials")
    assert len(at.dataframe[0].value) == 42  # 40 synthetic + the 2 re-run best trials with weights: one page of 50
    widget(at.multiselect, "State").set_value(["FAIL"]).run()
    failed = at.dataframe[0].value
    assert not at.exception and len(failed) and set(failed["state"]) == {"FAIL"}
    widget(at.multiselect, "State").set_value(["COMPLETE", "PRUNED", "FAIL"])
    widget(at.selectbox, "Rows per page").set_value(25).run()
    assert len(at.dataframe[0].value) == 25 and "Trials 1–25 of 42 shown" in texts(at.caption)
    widget(at.number_input, "Page").set_value(2).run()
    assert len(at.dataframe[0].value) == 42 - 25
    widget(at.multiselect, "Init").set_value(["random"]).run()
    assert set(at.dataframe[0].value["init"]) == {"random"}
    widget(at.selectbox, "Trial").set_value(int(failed["number"].iloc[0])).run()
    assert not at.exception
    assert "diverged" in texts(at.warning)
    assert widget(at.metric, "State").value == "FAIL"


def test_export_builds_a_download(demo, app_env):
    app_env(demo["url"], demo["artifacts"])
    at = run("study", "vit-digits", "Best model & export")
    assert at.subheader[0].value.startswith("Best trial: #")
    at.button(key=next(b.key for b in at.button if b.label == "Build export (.zip)")).click().run()
    assert not at.exception and not at.error
    assert len(at.get("download_button")) == 1
    assert "model.safetensors" in texts(at.caption)


def test_export_with_corrupt_artifact_shows_error_and_page_keeps_working(demo, app_env, tmp_path):
    store = tmp_path / "artifacts"
    shutil.copytree(demo["artifacts"], store)
    for f in store.iterdir():
        f.write_bytes(b"not safetensors")
    app_env(demo["url"], str(store))
    at = run("study", "vit-digits", "Best model & export")
    at.button(key=next(b.key for b in at.button if b.label == "Build export (.zip)")).click().run()
    assert not at.exception
    assert "corrupt" in texts(at.error) and not at.get("download_button")
    assert at.title[0].value == "vit-digits" and at.metric  # the rest of the page is still there
    shutil.rmtree(store)
    at.run()
    assert "does not exist" in texts(at.error)


def test_legacy_study_without_our_attrs(demo, app_env):
    app_env(demo["url"], demo["artifacts"])
    at = run("study", "legacy")
    assert "no logah-nas study attrs" in texts(at.info)
    assert charts(at) == 2  # history + importances still work
    at = run("study", "legacy", "Warm start vs random")
    assert "No intermediate values" in texts(at.info)
    at = run("study", "legacy", "Best model & export")
    assert "no stored weights" in texts(at.info)
    at = run("study", "legacy", "Hypernet versions")
    assert "No hypernet versions" in texts(at.info)


def test_study_without_completed_trials_and_without_trials(edge, app_env):
    app_env(edge["url"])
    for tab in TABS:
        at = run("study", "unfinished", tab)
        assert "No completed trials yet" in texts(at.warning)
    assert "No completed trial yet" in texts(run("study", "unfinished", "Best model & export").info)
    at = run("study", "fresh")
    assert "no trials yet" in texts(at.info) and not at.tabs


def test_unknown_study_in_url_falls_back(demo, app_env):
    app_env(demo["url"])
    at = run("study", "nope")
    assert "No study named `nope`" in texts(at.warning) and at.title[0].value == "legacy"


def test_every_page_leaves_the_database_byte_identical(demo, edge, app_env):
    before = {p: digest(p) for p in (demo["db"], edge["db"])}
    app_env(demo["url"], demo["artifacts"])
    run()
    for study in ("legacy", "vit-digits"):
        for tab in TABS:
            at = run("study", study, tab)
    at.button(key=next(b.key for b in at.button if b.label == "Build export (.zip)")).click().run()
    assert at.get("download_button")
    app_env(edge["url"])
    for study in ("unfinished", "fresh"):
        run("study", study)
    assert {p: digest(p) for p in before} == before
