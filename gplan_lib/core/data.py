"""The GSISR CSV format: 32 columns, UTF-8, standard CSV quoting, CRLF rows (as released).

Rows keep their cells as strings so that reading and writing a file round-trips byte for byte;
typed views (time, flags, the gold plan) are properties. A bad row raises ``RowError`` naming
the row id, the column and the rule, or, with ``errors="collect"``, is reported with its reasons
and left out of the returned rows - never dropped silently. A byte-order mark, long cells and blank
lines are read; bytes that are not UTF-8 and quotes left open are errors naming the line.
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Literal

from .files import atomic_write
from .intents import Plan
from .parsing import ParsedOutput, parse_output
from .paths import released_csv

PROFILE_COLUMNS = tuple(f"profile_feat_{i}" for i in range(1, 15))
TRIGGER_COLUMNS = tuple(f"trigger_{i}" for i in range(1, 8))
COLUMNS: tuple[str, ...] = (
    "id", *PROFILE_COLUMNS, "short_term_behavior_seq", "long_term_behavior", "currenttime",
    "holidayflag", "weekendflag", "current_poi_name", "current_tag", "current_city",
    "current_district", *TRIGGER_COLUMNS, "raw_labels",
)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
ORDER_TYPES = ("酒店", "加油", "充电桩", "门票", "其他")


INTEGER_RE = re.compile(r"[+-]?[0-9]{1,18}")  # ASCII digits only: str.isdigit also takes '²' and '٣'


def parse_int(text: str) -> int | None:
    """The one strict reading of an integer in user input (CSV cells, HTTP headers): an optional sign and up to
    18 ASCII digits, nothing else; None otherwise ('--5', '²', '1e3', ' 7' are not integers)."""
    return int(text) if isinstance(text, str) and INTEGER_RE.fullmatch(text) else None


def _int_in(lo: int, hi: int, optional: bool = True):
    def check(v: str) -> str | None:
        if v == "" and optional:
            return None
        n = parse_int(v)
        if n is None or not lo <= n <= hi:
            return f"must be an integer in [{lo}, {hi}]" + (" or empty" if optional else "")
        return None
    return check


def _time(optional: bool):
    def check(v: str) -> str | None:
        if v == "" and optional:
            return None
        try:
            datetime.strptime(v, TIME_FORMAT)
        except ValueError:
            return "must be a time 'YYYY-MM-DD HH:MM:SS'" + (" or empty" if optional else "")
        return None
    return check


def _nonempty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _label(v: str) -> str | None:
    parsed = parse_output(v)
    if parsed.status != "parsed":
        return f"label JSON does not parse ({parsed.problem})"
    if parsed.non_objects:
        return "label JSON must be an array of objects"
    return None


#: Type rules per column (columns not listed are free text).
CHECKS = {
    "id": _nonempty,
    "profile_feat_1": _int_in(0, 1), "profile_feat_3": _int_in(0, 1), "profile_feat_4": _int_in(0, 1),
    "profile_feat_10": _int_in(0, 1), "profile_feat_2": _int_in(1, 10), "profile_feat_11": _int_in(1, 4),
    "currenttime": _time(optional=False), "holidayflag": _int_in(0, 1, optional=False),
    "weekendflag": _int_in(0, 1, optional=False),
    "trigger_1": lambda v: None if v in ORDER_TYPES else f"must be one of {ORDER_TYPES}",
    "trigger_5": _time(optional=True), "trigger_6": _time(optional=True), "trigger_7": _time(optional=True),
    "raw_labels": _label,
}


class RowError(ValueError):
    """A row that breaks the format: names the file (when read from one), the row (id and 0-based data-row
    index), the column and the rule."""

    def __init__(self, row_index: int, row_id: str, column: str, problem: str, path: str | os.PathLike | None = None):
        self.row_index, self.row_id, self.column, self.problem, self.path = row_index, row_id, column, problem, path
        where = f"{path}: " if path is not None else ""
        super().__init__(f"{where}row {row_index} (id={row_id[:40]!r}), column {column!r}: {problem}")

    def in_file(self, path: str | os.PathLike) -> "RowError":
        """The same error, naming the file it was read from."""
        return RowError(self.row_index, self.row_id, self.column, self.problem, path)


@dataclass
class GsisrRow:
    """One GSISR sample; ``cells`` maps every column to its raw string."""

    cells: dict[str, str]
    _label: tuple[str, ParsedOutput] | None = field(default=None, init=False, repr=False, compare=False)

    def parsed_label(self) -> ParsedOutput:
        """``raw_labels`` parsed, once per label text (rows are read far more often than changed)."""
        text = self.cells["raw_labels"]
        if self._label is None or self._label[0] != text:
            self._label = (text, parse_output(text))
        return self._label[1]

    def __getitem__(self, column: str) -> str:
        return self.cells[column]

    @property
    def id(self) -> str:
        return self.cells["id"]

    @property
    def time(self) -> datetime:
        return datetime.strptime(self.cells["currenttime"], TIME_FORMAT)

    @property
    def plan(self) -> Plan:
        """The gold intent sequence from ``raw_labels`` (any reasoning prefix removed)."""
        return self.parsed_label().plan

    @property
    def thought(self) -> str | None:
        """The inner text of the label's <THOUGHT> block, if the label carries one."""
        return self.parsed_label().thought

    def replace(self, **cells: str) -> "GsisrRow":
        """A copy with some cells changed (used for counterfactual contexts)."""
        unknown = set(cells) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown GSISR columns: {sorted(unknown)}")
        return GsisrRow({**self.cells, **cells})


def validate_cells(cells: dict[str, str], row_index: int, labels: bool = True) -> list[RowError]:
    """Every type-rule failure of one row's cells (``labels=False``: an empty label is allowed, for
    rows that are only to be planned or judged)."""
    row_id = cells.get("id", "")
    errs = [RowError(row_index, row_id, c, "column is missing") for c in COLUMNS if c not in cells]
    for col, check in CHECKS.items():
        if col == "raw_labels" and not labels and not cells.get(col, "").strip():
            continue
        if col in cells and (problem := check(cells[col])):
            errs.append(RowError(row_index, row_id, col, f"{problem}; got {cells[col][:60]!r}"))
    return errs


@dataclass
class LoadReport:
    """Rows that loaded, and the errors of those that did not (``errors="collect"``)."""

    rows: list[GsisrRow]
    errors: list[RowError] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)  # data-row index of each loaded row
    repeated_ids: dict[str, list[int]] = field(default_factory=dict)  # id -> data-row indices, where > 1

    @property
    def n_read(self) -> int:
        """Data rows in the file, loaded or not."""
        return len(self.rows) + len({e.row_index for e in self.errors})


#: The largest cell read (the csv module's default, 128 KiB, is below what a long reasoning label may need).
MAX_FIELD = 16 * 1024 * 1024


def _decode(path: str | os.PathLike) -> str:
    """The file's text: UTF-8, a leading byte-order mark (Excel's "CSV UTF-8") dropped; bytes that
    are not UTF-8 are an error naming the line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start}); "
                         "save the file as UTF-8") from None


def read_gsisr_csv(path: str | os.PathLike, errors: Literal["raise", "collect"] = "raise",
                   labels: bool = True) -> LoadReport:
    """Read a GSISR CSV. ``errors="raise"`` stops at the first bad row with a ``RowError``;
    ``labels=False`` accepts rows without a label (contexts to plan or judge).
    Blank lines are skipped; repeated ids are listed in ``repeated_ids`` (an id is a user id: the
    released rows hold a few users in several contexts, so it is not an error); quoting is read strictly
    (a quote left open is an error naming the line, not a row that swallows the rest of the file)."""
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD))
    reader = csv.reader(io.StringIO(_decode(path), newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ValueError(f"{path}: the header line is not valid CSV ({exc})") from None
    if header is None:
        raise ValueError(f"{path}: empty file, expected the header {','.join(COLUMNS)}")
    missing, extra = [c for c in COLUMNS if c not in header], [c for c in header if c not in COLUMNS]
    if missing or extra or len(header) != len(COLUMNS):
        raise ValueError(f"{path}: header must hold the {len(COLUMNS)} GSISR columns; "
                         f"missing {missing}, unexpected {extra}, {len(header)} given")
    report, seen, idx = LoadReport([]), {}, 0
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader, None)
        except csv.Error as exc:
            raise RowError(idx, "", "*", f"line {line}: not valid CSV ({exc}; is a quote left open?)", path) from None
        if values is None:
            break
        if not any(v.strip() for v in values) and len(values) <= 1:
            continue  # a blank line
        if len(values) != len(header):
            errs = [RowError(idx, values[0], "*", f"line {line}: has {len(values)} cells, the header has {len(header)}")]
        else:
            cells = dict(zip(header, values))
            errs = validate_cells(cells, idx, labels)
            seen.setdefault(cells["id"], []).append(idx)
        if errs and errors == "raise":
            raise errs[0].in_file(path)
        report.errors += errs
        if not errs:
            report.rows.append(GsisrRow({c: cells[c] for c in COLUMNS}))
            report.indices.append(idx)
        idx += 1
    report.repeated_ids = {k: v for k, v in seen.items() if len(v) > 1}
    return report


def load_rows(path: str | os.PathLike) -> list[GsisrRow]:
    """Read a GSISR CSV, raising on the first bad row."""
    return read_gsisr_csv(path).rows


def to_csv_text(rows: Iterable[GsisrRow]) -> str:
    """The CSV text of ``rows`` in the released layout (header, minimal quoting, CRLF)."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for i, row in enumerate(rows):
        errs = validate_cells(row.cells, i)
        if errs:
            raise errs[0]
        writer.writerow([row.cells[c] for c in COLUMNS])
    return buf.getvalue()


def write_gsisr_csv(rows: Iterable[GsisrRow], path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write rows as a GSISR CSV, whole or not at all; refuses to replace an existing file unless ``overwrite``
    (and then replaces it only once the new one is complete)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    text = to_csv_text(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, text)


def load_released(limit: int | None = None) -> tuple[list[GsisrRow], Path] | None:
    """The released GSISR rows (``paths.released_csv``; the first ``limit``) and their file, or None when absent."""
    path = released_csv()
    return None if path is None else (load_rows(path)[:limit], path)
