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
