"""app.charts: what the figures show (data in, traces out; no browser)."""
from app import charts
from app.reader import Reader


def test_versions_chart_pairs_each_refit_with_its_parent(demo):
    fig = charts.versions(Reader(demo["url"]).versions("vit-digits"))
    parents = next(t for t in fig.data if t.name == "parent, same held-out set")
    assert list(parents.y) == [2.05, 1.62, 1.62] and list(parents.text) == ["v1", "v2", "v3"]
    (links,) = [t for t in fig.data if t.mode == "lines" and t.name is None]
    assert list(links.y) == [2.05, 1.62, None, 1.62, 1.71, None, 1.62, 1.31, None]
    assert fig.layout.yaxis.range[1] > 2.05  # the y range covers the parents too


def _gains():
    """v0 and v2 used by warm trials, v1 rejected (no warm trials), v3 not used yet."""
    import datetime as dt

    import optuna

    from app import analysis
    from nas.versions import HypernetVersion

    def trial(value, warm, version=None, step0=2.3):
        attrs = {"warm_start": warm, "loss_step0": step0, **({"hypernet_version": version} if warm else {})}
        return optuna.trial.create_trial(value=value, user_attrs=attrs)

    def version(n, promoted=True):
        return HypernetVersion(id=n, study_name="s", version=n, created_at=dt.datetime.now(dt.timezone.utc),
                               trials_used=10 * n, val_loss=None, parent_val_loss=None, promoted=promoted,
                               artifact_id="a", sha256="0" * 64, device="cpu", seconds=2.0 + n, note=f"note {n}")

    trials = [trial(0.9, False), trial(0.7, False), trial(0.78, True, 0, 1.3), trial(0.76, True, 0, 1.1),
              trial(0.6, True, 2, 0.9)]
    return analysis.version_gains(trials, [version(0), version(1, promoted=False), version(2), version(3)])


def test_version_gain_chart_bars_per_version_with_gaps_not_zeros():
    import math

    import pytest

    fig = charts.version_gain(_gains())
    final = [t for t in fig.data if t.xaxis == "x"]
    step0 = [t for t in fig.data if t.xaxis == "x2"]
    by_name = {t.name: t for t in final}
    assert set(by_name) == {"promoted", "not promoted"} and [t.showlegend for t in final] == [True, True]
    assert not any(t.showlegend for t in step0)  # one legend for both panels
    promoted = by_name["promoted"]
    assert list(promoted.x) == ["v0", "v2", "v3"]
    assert promoted.y[0] == pytest.approx(0.8 - 0.77) and promoted.y[1] == pytest.approx(0.8 - 0.6)
    assert math.isnan(promoted.y[2])  # v3: no warm trials, a gap
    assert math.isnan(by_name["not promoted"].y[0])  # v1: rejected, never used
    assert list(promoted.text) == ["+0.030", "+0.200", None]
    assert [list(row) for row in promoted.customdata[:2, 0:1]] == [[2], [1]]  # warm trials per version in the hover
    assert "warm trials" in promoted.hovertemplate
    assert list(fig.layout.xaxis.categoryarray) == ["v0", "v1", "v2", "v3"]  # every version keeps its place
    gaps = [a for a in fig.layout.annotations if "no warm" in a.text]
    assert sorted((a.x, a.xref) for a in gaps) == [("v1", "x"), ("v1", "x2"), ("v3", "x"), ("v3", "x2")]
    step0_promoted = next(t for t in step0 if t.name == "promoted")
    assert step0_promoted.y[0] == pytest.approx(2.3 - 1.2) and step0_promoted.y[1] == pytest.approx(2.3 - 0.9)
