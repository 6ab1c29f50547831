"""The gplan command line: validate and score, their exit codes and JSON reports."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gplan_lib.cli import main
from gplan_lib.data import write_gsisr_csv
from gplan_lib.intents import dumps_plan
from helpers import make_row

BAD = dumps_plan([{"工具名称": "tool_1", "起始位置": "当前位置", "终点位置": "订单目的地"},
                  {"工具名称": "tool_2", "起始位置": "当前位置", "终点位置": "家"},
                  {"工具名称": "tool_9"}, {"工具名称": "tool_8"}])


def test_report_csvs_every_failing_row(tmp_path, capsys):
    path = write_gsisr_csv([make_row(id="a"), make_row(id="b", raw_labels=BAD)], tmp_path / "d.csv")
    assert main(["validate", str(path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["n_rows"] == 2 and report["n_failed"] == 1
    (fail,) = report["failures"]
    assert fail["id"] == "b" and fail["row"] == 1
    assert fail["violations"][0] == {"tier": "logic", "rule": "mutual_exclusion", "index": 1,
                                     "message": fail["violations"][0]["message"]}
    assert report["by_rule"] == {"logic/mutual_exclusion": 1}


def test_report_csvs_rows_that_do_not_load(tmp_path, capsys):
    path = write_gsisr_csv([make_row(id="a")], tmp_path / "d.csv")
    text = path.read_text(encoding="utf-8").replace("2026-03-01 18:30:00", "soon")
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(path), "--json"]) == 1
    fail = json.loads(capsys.readouterr().out)["failures"][0]
    assert fail["violations"][0]["rule"] == "csv_row" and "currenttime" in fail["violations"][0]["message"]


def test_validate_released_rows_passes(calibration_path):
    out = subprocess.run([sys.executable, "-m", "gplan_lib.cli", "validate", str(calibration_path), "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n_rows"] == 501


def _preds(path, rows, outputs):
    path.write_text("".join(json.dumps({"id": r.id, "output": o}, ensure_ascii=False) + "\n"
                            for r, o in zip(rows, outputs)), encoding="utf-8")


def test_score_gold_against_itself(calibration_path, calibration_rows, tmp_path, capsys):
    _preds(tmp_path / "p.jsonl", calibration_rows, [r["raw_labels"] for r in calibration_rows])
    assert main(["score", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(calibration_path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["acc1"], s["ndcg3"], s["nes"], s["validity"], s["n"]) == (1.0, 1.0, 1.0, 1.0, 501)
    assert s["ci95"]["acc1"] == [1.0, 1.0]


def test_score_mixed_predictions(tmp_path, capsys):
    rows = [make_row(id="a"), make_row(id="b")]
    gold = write_gsisr_csv(rows, tmp_path / "g.csv")
    _preds(tmp_path / "p.jsonl", rows, [rows[0]["raw_labels"], "garbage"])
    assert main(["score", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold)]) == 0
    out = capsys.readouterr().out
    assert "acc1      0.5000" in out and "n = 2" in out


def test_score_rejects_misaligned_predictions(tmp_path):
    rows = [make_row(id="a"), make_row(id="b")]
    gold = write_gsisr_csv(rows, tmp_path / "g.csv")
    _preds(tmp_path / "p.jsonl", rows[::-1], ["x", "y"])
    with pytest.raises(SystemExit, match="id 'b' but gold row 0 has id 'a'"):
        main(["score", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold)])
    _preds(tmp_path / "p.jsonl", rows[:1], ["x"])
    with pytest.raises(SystemExit, match="1 predictions for 2 gold rows"):
        main(["score", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold)])
    (tmp_path / "p.jsonl").write_text('{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match="p.jsonl:1: needs a string field 'output'"):
        main(["score", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold)])
