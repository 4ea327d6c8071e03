"""Summaries, protocol header and JSON/CSV output of ``medsr.evaluation.report``."""

import csv
import json
import math

import numpy as np
from scipy import stats

from medsr.evaluation.report import protocol_header, render, report_dict, summarise, write_csv, write_json


def test_summarise_matches_t_interval():
    values = [31.2, 29.8, 30.5, 33.1, 28.7]
    mean, std, low, high = summarise(values)
    assert math.isclose(mean, np.mean(values))
    assert math.isclose(std, np.std(values, ddof=1))
    ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert math.isclose(low, ref[0]) and math.isclose(high, ref[1])


def test_summarise_leaves_out_non_finite_and_handles_small_samples():
    assert summarise([1.0, 3.0, float("inf"), float("nan"), None])[:2] == (2.0, math.sqrt(2.0))
    one = summarise([4.0])
    assert one.mean == 4.0 and math.isnan(one.std) and math.isnan(one.ci95_low)
    assert all(math.isnan(v) for v in summarise([]))


def test_protocol_header_states_every_entry():
    text = protocol_header({"data range": "gt-range", "data range values": [0.5, 1.25], "crop": 4})
    lines = text.splitlines()
    assert lines[0] == "protocol"
    assert any("data range:" in ln and ln.rstrip().endswith("gt-range") for ln in lines)
    assert any(ln.rstrip().endswith("0.5, 1.25") for ln in lines)
    assert any(ln.rstrip().endswith("crop:              4") for ln in lines)


def test_render_and_files(tmp_path):
    records = [{"file": "a", "psnr": 30.0, "note": ""}, {"file": "b", "psnr": float("nan"), "note": "n/a: tiny"},
               {"file": "c", "psnr": float("inf"), "note": ""}]
    text = render({"rule": "gt-range"}, ["file"], ["psnr"], records, extra=["note"])
    assert text.startswith("protocol")
    assert "n/a: tiny" in text and "inf" in text
    assert "n=1 (2 n/a or infinite, left out)" in text
    write_json(tmp_path / "r.json", report_dict({"rule": "gt-range"}, ["psnr"], records))
    loaded = json.loads((tmp_path / "r.json").read_text())
    assert loaded["items"][1]["psnr"] is None and loaded["items"][2]["psnr"] == "inf"
    assert loaded["summary"]["psnr"]["n"] == 1 and loaded["summary"]["psnr"]["mean"] == 30.0
    write_csv(tmp_path / "r.csv", ["file", "psnr"], records)
    rows = list(csv.reader((tmp_path / "r.csv").open()))
    assert rows == [["file", "psnr"], ["a", "30.0"], ["b", ""], ["c", "inf"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]
