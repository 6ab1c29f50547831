"""The regime grid's committed run records (results/<scale>/regimes_runs.jsonl): one JSON object a line, each a
scored run with its ``run`` name (``seed-<s>/<run>``), the key of its settings, its metrics and provenance. Weights
and runs/ stay on the machine that made them; this file is what lets a grid run in parts over several machines."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..core.files import atomic_write

#: The committed record of every scored run (results/<scale>/), one JSON object a line with its ``run`` name.
LEDGER = "regimes_runs.jsonl"


def read_ledger(path: Path) -> dict[str, dict[str, Any]]:
    """The committed run records of ``path`` by run name ({} when there is no file yet); a line that is not a JSON
    object with a ``run`` (``seed-<s>/<run>``) and a ``key`` is an error naming the file, the line and the rule."""
    out: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {n}: not JSON ({e.msg})") from None
        if not isinstance(record, dict) or not all(isinstance(record.get(f), str) for f in ("run", "key")):
            raise ValueError(f"{path}, line {n}: a run record must be an object with string fields 'run' and 'key'")
        if not re.fullmatch(r"seed-\d+/[^/]+", record["run"]):
            raise ValueError(f"{path}, line {n}: run {record['run']!r} is not named seed-<s>/<run>")
        if record["run"] in out:
            raise ValueError(f"{path}, line {n}: run {record['run']!r} recorded twice")
        out[record["run"]] = record
    return out


def write_ledger(path: Path, records: dict[str, dict[str, Any]]) -> Path:
    """``records`` by run name as the ledger at ``path``, sorted, written whole (temporary file + rename)."""
    return atomic_write(path, "".join(json.dumps({"run": name, **r}, ensure_ascii=False, sort_keys=True) + "\n"
                                      for name, r in sorted(records.items())))


def provenance_by_seed(machines: dict[int, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """What produced the stored runs: one entry per seed whose runs share a machine and library versions, else
    one per run of that seed (a grid run in parts may span machines)."""
    out: dict[str, dict[str, Any]] = {}
    for seed, runs in sorted(machines.items()):
        distinct = {json.dumps(v, sort_keys=True) for v in runs.values()}
        if len(distinct) == 1:
            out[f"seed {seed}"] = next(iter(runs.values()))
        else:
            out.update({f"seed {seed}: {run}": v for run, v in runs.items()})
    return out
