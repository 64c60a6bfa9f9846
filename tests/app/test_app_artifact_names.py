"""The trial detail lists and serves a trial's artifacts under the file names Optuna recorded."""
from streamlit.testing.v1 import AppTest

from _apptest import MAIN


def test_trial_artifacts_download_under_their_recorded_file_names(demo, app_env):
    app_env(demo["url"], demo["artifacts"])
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.switch_page("views/study.py")
    at.query_params["study"] = "vit-digits"
    at.session_state["tab"] = "Trials"
    at.run()
    trial = next(s for s in at.selectbox if s.label == "Trial")
    arts = None
    for option in trial.options:  # the re-run best trials carry a weights artifact
        trial.set_value(int(option)).run()
        tables = [d.value for d in at.dataframe if "filename" in d.value.columns]
        if tables and len(tables[0]):
            arts = tables[0]
            break
    assert arts is not None and list(arts.columns)[0] == "filename"
    name = arts["filename"].iloc[0]
    assert name.endswith(".safetensors")
    at.button(key=next(b.key for b in at.button if b.label == f"Prepare {name}")).click().run()
    assert not at.exception and not at.error
    (download,) = at.get("download_button")
    assert download.proto.label == f"Download {name}"
