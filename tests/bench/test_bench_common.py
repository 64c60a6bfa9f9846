"""bench/_common.py: the helpers every bench shares."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_write_json_names_the_bench_keeps_order_on_request_and_replaces_atomically(common, tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    common.write_json(None, "x", {"a": 1})  # no --out: nothing written, no error
    common.write_json(out, "step0", {"z": 1, "a": Path("p"), "m": {"y": 2, "b": 3}})
    saved = json.loads(out.read_text())
    assert saved == {"bench": "step0", "z": 1, "a": "p", "m": {"y": 2, "b": 3}}  # paths as strings
    assert list(saved) == ["a", "bench", "m", "z"] and list(saved["m"]) == ["b", "y"]
    common.write_json(out, "protocol", {"z": 1, "a": 2}, sort_keys=False)
    assert list(json.loads(out.read_text())) == ["bench", "z", "a"]  # run order, as --from-json prints it

    import search_spaces.files as files

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        common.write_json(out, "protocol", {"new": 1})
    assert json.loads(out.read_text()) == {"bench": "protocol", "z": 1, "a": 2}  # the previous file is whole
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind


def test_parse_seeds_reads_a_seeds_flag_and_exits_naming_it(common):
    assert common.parse_seeds("0,1,2") == [0, 1, 2] and common.parse_seeds("7") == [7]
    for bad, why in (("0,a", "comma-separated integers"), ("", "comma-separated integers"), ("1,1", "distinct")):
        with pytest.raises(SystemExit, match=f"--seeds: {why}"):
            common.parse_seeds(bad)
