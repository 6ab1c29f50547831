"""The gplan command line: validate and score, their exit codes and JSON reports."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import make_row, raw_csv

from gplan_lib.cli import main
from gplan_lib.core.data import write_gsisr_csv
from gplan_lib.core.intents import dumps_plan

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
                         capture_output=True, text=True, timeout=300)
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


def _fails(capsys, argv: list[str], message: str, code: int = 2) -> None:
    """``gplan argv`` exits ``code`` with one line on stderr holding ``message`` and no traceback."""
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_score_rejects_misaligned_predictions(tmp_path, capsys):
    rows = [make_row(id="a"), make_row(id="b")]
    gold = write_gsisr_csv(rows, tmp_path / "g.csv")
    score = ["score", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold)]
    _preds(tmp_path / "p.jsonl", rows[::-1], ["x", "y"])
    _fails(capsys, score, "id 'b' but gold row 0 has id 'a'")
    _preds(tmp_path / "p.jsonl", rows[:1], ["x"])
    _fails(capsys, score, "1 predictions for 2 gold rows")
    (tmp_path / "p.jsonl").write_text('{"id": "a"}\n', encoding="utf-8")
    _fails(capsys, score, "p.jsonl:1: needs a string field 'output'")


def test_score_refuses_records_without_ids(tmp_path, capsys):
    """Finding 2: id-less records were paired by position and scored wrongly with exit 0."""
    rows = [make_row(id=str(i)) for i in range(5)]
    gold = write_gsisr_csv(rows, tmp_path / "g.csv")
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"output": r["raw_labels"]}) + "\n" for r in rows[::-1]))
    _fails(capsys, ["score", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold)], "p.jsonl:1: has no 'id'")


@pytest.mark.parametrize("label", ["[" * 1000 + "]" * 1000, "<THOUGHT>" * 10_000], ids=["nested", "thought-tags"])
def test_validate_names_the_row_of_hostile_labels_quickly(tmp_path, capsys, label):
    """Finding 3: 1,000 nested brackets raised RecursionError; finding 4: 10,000 THOUGHT tags took seconds."""
    import time
    raw_csv(tmp_path / "d.csv", [make_row(id="a"), make_row(id="hostile", raw_labels=label)])
    t = time.perf_counter()
    assert main(["validate", str(tmp_path / "d.csv"), "--json"]) == 1
    assert time.perf_counter() - t < 1.0
    (fail,) = json.loads(capsys.readouterr().out)["failures"]
    assert fail["id"] == "hostile" and fail["row"] == 1


def test_csv_layer_reads_bom_long_cells_and_blank_lines_and_names_bad_lines(tmp_path, capsys):
    """Finding 8."""
    rows = [make_row(id="a"), make_row(id="b", long_term_behavior="x" * 200_000)]
    path = write_gsisr_csv(rows, tmp_path / "d.csv")
    data = path.read_bytes()
    path.write_bytes(b"\xef\xbb\xbf" + data + b"\r\n")  # Excel's BOM, a trailing blank line
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()
    path.write_bytes(data.replace(b"p_5", b"p_\xff5", 1))
    _fails(capsys, ["validate", str(path)], "line 2 is not UTF-8")
    lines = data.split(b"\r\n")
    path.write_bytes(lines[0] + b"\r\n" + lines[1].replace(b",", b',"', 1) + b"\r\n" + lines[2] + b"\r\n")
    _fails(capsys, ["validate", str(path)], "not valid CSV")


def test_user_mistakes_are_one_line_exit_2(tmp_path, capsys):
    """Finding 9: missing file, a folder, a bad header, a bad number; --debug shows the traceback."""
    _fails(capsys, ["validate", str(tmp_path / "none.csv")], "none.csv: No such file or directory")
    _fails(capsys, ["validate", str(tmp_path)], "a dataset folder has a manifest.json")
    (tmp_path / "h.csv").write_text("id,x\n1,2\n", encoding="utf-8")
    _fails(capsys, ["validate", str(tmp_path / "h.csv")], "header must hold the 32 GSISR columns")
    _fails(capsys, ["predict", "--model", "missing/dir", "--data", str(tmp_path / "h.csv"), "--out", "x"],
           "header must hold")
    with pytest.raises(SystemExit) as bad:
        main(["synth", "--n", "10", "--pair-anchors", "-3", "--out", str(tmp_path / "s")])
    assert bad.value.code == 2 and "must be >= 0" in capsys.readouterr().err
    with pytest.raises(ValueError):
        main(["validate", str(tmp_path / "h.csv"), "--debug"])


def test_under_torchrun_the_error_names_its_rank(tmp_path, capsys, monkeypatch):
    """torchrun interleaves the processes' output: a rank's one-line error says which rank it is."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["validate", str(tmp_path / "none.csv")]) == 2
    assert capsys.readouterr().err.startswith("gplan validate (rank 1 of 2): ")


def test_predict_needs_no_labels_and_names_a_missing_model_folder(tmp_path, capsys):
    """Finding 9 (findings page): a missing model folder said 'unknown planner'; predict needed labels."""
    path = tmp_path / "d.csv"
    raw_csv(path, [make_row(id="a", raw_labels="")])
    assert main(["validate", str(path)]) == 1  # a label is needed to validate ...
    assert main(["predict", "--model", "teacher", "--data", str(path), "--out", str(tmp_path / "p.jsonl")]) == 0  # not to plan
    capsys.readouterr()
    _fails(capsys, ["predict", "--model", str(tmp_path / "nope"), "--data", str(path), "--out", str(tmp_path / "q")],
           "no such folder")


def test_synth_recovers_from_a_corrupt_manifest_with_overwrite(tmp_path, capsys):
    """Finding 10: a corrupt manifest.json blocked even --overwrite."""
    out = tmp_path / "d"
    argv = ["synth", "--n", "30", "--test-size", "5", "--pair-anchors", "5", "--workers", "1", "--out", str(out)]
    assert main(argv) == 0
    (out / "manifest.json").write_text("{trunc", encoding="utf-8")
    from gplan_lib.synthesis.synthesize import SynthConfig, ensure_dataset
    cfg = SynthConfig(n=30, test_size=5, pair_anchors=5, workers=1)
    with pytest.raises(FileExistsError, match="unreadable"):
        ensure_dataset(cfg, out)
    assert ensure_dataset(cfg, out, overwrite=True)["counts"]["train"] == 25


def test_synthesis_workers_start_clean_of_this_process_signal_handlers():
    """`gplan synth` hung (12 runs in 96 here, and CI's first synthesis): its forked workers inherited the
    CLI's SIGTERM handler (SIGTERM -> SystemExit) and this process's threads, and when the pool closed one
    worker blocked forever on the task queue's lock. Spawned workers start with the default SIGTERM action."""
    import signal

    from gplan_lib.synthesis.synthesize import _workers
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with _workers(2) as pool:
            assert pool.apply(signal.getsignal, (signal.SIGTERM,)) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_leaves_no_synth_worker_behind(tmp_path):
    """Finding 10: killing `gplan synth` orphaned its worker processes."""
    import signal
    import time

    import psutil
    proc = subprocess.Popen([sys.executable, "-m", "gplan_lib.cli", "synth", "--n", "400000", "--workers", "2",
                             "--out", str(tmp_path / "big")], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while len(parent.children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    children = parent.children(recursive=True)
    assert len(children) >= 2, "the workers never started"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.pid for p in alive]
