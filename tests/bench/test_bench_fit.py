"""bench/fit.py: every start trained and scored on val and on fixed train batches; bad input refused."""
from __future__ import annotations

import json
import math

import pytest


def test_a_quick_run_scores_every_start_on_val_and_train_and_rejects_bad_input(fit, tmp_path, capsys):
    out = tmp_path / "fit.json"
    payload = fit.main(["--archs", "1x32", "--steps", "3", "--seeds", "0,1", "--train-batches", "2",
                        "--starts", "random_gpt2,hypernet_study", "--out", str(out), "--markdown"])
    rows = {r["start"]: r for r in payload["rows"]}
    assert set(rows) == {"random_gpt2", "hypernet_study"}
    for r in rows.values():
        assert len(r["runs"]["val"]) == len(r["runs"]["train"]) == 2
        assert all(math.isfinite(x) for x in r["runs"]["val"] + r["runs"]["train"])
    # three steps from the prediction fit the training batches far better than three from random init
    assert rows["hypernet_study"]["train"][0] < rows["random_gpt2"]["train"][0] - 0.5
    assert json.loads(out.read_text())["bench"] == "fit"
    assert "| L1 d32" in capsys.readouterr().out  # the markdown row
    for bad, flag in ((["--starts", "inherit"], "--starts"), (["--train-batches", "0"], "--train-batches"),
                      (["--seeds", "0,0"], "--seeds")):
        with pytest.raises(SystemExit, match=flag):
            fit.main(["--archs", "1x32", "--steps", "3", *bad])


def test_mean_loss_is_the_mean_over_batches_in_eval_mode(fit):
    import torch

    class Half(torch.nn.Module):
        def forward(self, x, y):
            return None, x.mean() * (0.5 if self.training else 1.0)

    model = Half()
    model.train()
    batches = [(torch.full((2,), 1.0), None), (torch.full((2,), 3.0), None)]
    assert fit.mean_loss(model, batches) == pytest.approx(2.0) and not model.training
