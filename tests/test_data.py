"""The GSISR CSV layer: byte-for-byte round trip, and bad rows named by id, column and rule."""
from __future__ import annotations

import csv

import pytest
from helpers import make_row

from gplan_lib.core.data import COLUMNS, RowError, read_gsisr_csv, to_csv_text, write_gsisr_csv


def test_released_file_round_trips_byte_for_byte(calibration_path, calibration_rows, tmp_path):
    out = write_gsisr_csv(calibration_rows, tmp_path / "copy.csv")
    assert out.read_bytes() == calibration_path.read_bytes()
    assert len(calibration_rows) == 501 and all(len(r.plan) >= 4 for r in calibration_rows)


def test_synthetic_rows_round_trip(tmp_path):
    rows = [make_row(id=str(i), current_poi_name=f'p_{i}, "quoted"\nnewline') for i in range(3)]
    path = write_gsisr_csv(rows, tmp_path / "a.csv")
    again = read_gsisr_csv(path).rows
    assert [r.cells for r in again] == [r.cells for r in rows]
    assert path.read_bytes().count(b"\r\n") >= 4


def test_writer_refuses_to_overwrite(tmp_path):
    path = write_gsisr_csv([make_row()], tmp_path / "a.csv")
    with pytest.raises(FileExistsError):
        write_gsisr_csv([make_row()], path)
    write_gsisr_csv([make_row(id="u2")], path, overwrite=True)
    assert read_gsisr_csv(path).rows[0].id == "u2"


def _write_raw(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)


@pytest.mark.parametrize("column,value,needle", [
    ("raw_labels", '[{"工具名称":"tool_1"', "label JSON does not parse"),
    ("raw_labels", '["tool_1"]', "array of objects"),
    ("currenttime", "yesterday", "must be a time"),
    ("holidayflag", "2", "integer in [0, 1]"),
    ("profile_feat_2", "eleven", "integer in [1, 10]"),
    ("trigger_1", "飞机", "must be one of"),
    ("id", "", "must not be empty"),
])
def test_bad_row_errors_name_row_column_and_rule(tmp_path, column, value, needle):
    good, bad = make_row(id="ok"), make_row(**{"id": "bad-1", column: value})
    _write_raw(tmp_path / "x.csv", [COLUMNS, [good[c] for c in COLUMNS], [bad[c] for c in COLUMNS]])
    with pytest.raises(RowError) as exc:
        read_gsisr_csv(tmp_path / "x.csv")
    assert exc.value.row_index == 1 and exc.value.column == column and needle in str(exc.value)
    assert f"column {column!r}" in str(exc.value)
    report = read_gsisr_csv(tmp_path / "x.csv", errors="collect")
    assert [r.id for r in report.rows] == ["ok"] and report.n_read == 2
    assert [(e.row_index, e.column) for e in report.errors] == [(1, column)]


def test_short_row_and_bad_header(tmp_path):
    row = make_row(id="short")
    _write_raw(tmp_path / "s.csv", [COLUMNS, [row[c] for c in COLUMNS][:20]])
    with pytest.raises(RowError, match="has 20 cells"):
        read_gsisr_csv(tmp_path / "s.csv")
    _write_raw(tmp_path / "h.csv", [COLUMNS[:-1], [row[c] for c in COLUMNS[:-1]]])
    with pytest.raises(ValueError, match=r"missing \['raw_labels'\]"):
        read_gsisr_csv(tmp_path / "h.csv")


def test_writer_validates_rows():
    with pytest.raises(RowError, match="weekendflag"):
        to_csv_text([make_row(weekendflag="yes")])


def test_row_views_and_replace():
    row = make_row()
    assert row.time.hour == 18 and row.plan[0]["工具名称"] == "tool_1" and row.thought is None
    cf = row.replace(currenttime="2026-03-01 08:00:00")
    assert cf.time.hour == 8 and row.time.hour == 18
    with pytest.raises(KeyError):
        row.replace(nonsense="1")
