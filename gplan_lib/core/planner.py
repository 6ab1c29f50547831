"""One interface for everything that plans: the offline and LLM teachers, the two floors, the students
(free and constrained decoding) and the Table 1 baselines. Rows go in, PRED.jsonl records come out, one per
row in order: ``id``, ``output`` (the raw text a scorer parses), ``latency_ms`` and whatever else the planner
measures (``new_tokens``, ``forward_passes``). ``gplan predict`` writes them; ``gplan score`` reads them."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol, Sequence

from tqdm.auto import tqdm

from .data import GsisrRow
from .files import atomic_write
from .intents import TOOL_KEY, Plan, dumps_plan
from .metrics import Scores, score_outputs


class Planner(Protocol):
    def predict(self, rows: Sequence[GsisrRow], desc: str = "predict") -> list[dict[str, Any]]:
        """One PRED.jsonl record per row, in order."""
        ...


def _timed(rows: Sequence[GsisrRow], output, desc: str) -> list[dict[str, Any]]:
    records = []
    for row in tqdm(rows, desc=desc):
        t = time.perf_counter()
        text = output(row)
        records.append({"id": row.id, "output": text, "latency_ms": (time.perf_counter() - t) * 1000})
    return records


class RowPlanner:
    """A planner that plans one row at a time with ``plan(row)`` (the offline teacher, the floors)."""

    def plan(self, row: GsisrRow) -> Plan:
        raise NotImplementedError

    def predict(self, rows: Sequence[GsisrRow], desc: str = "predict") -> list[dict[str, Any]]:
        return _timed(rows, lambda row: dumps_plan(self.plan(row)), desc)


class ToolPlanner:
    """A planner that predicts only the tool sequence, ``tools(row)`` (the Table 1 baselines, which the
    paper scores at tool level); its outputs are plans of parameterless intents."""

    def tools(self, row: GsisrRow) -> list[str]:
        raise NotImplementedError

    def predict(self, rows: Sequence[GsisrRow], desc: str = "predict") -> list[dict[str, Any]]:
        return _timed(rows, lambda row: dumps_plan([{TOOL_KEY: t} for t in self.tools(row)]), desc)


def write_predictions(records: Sequence[dict], path: str | Path, overwrite: bool = False) -> Path:
    """PRED.jsonl at ``path``, written whole or not at all (an existing file is replaced only with ``overwrite``,
    and only once the new one is complete)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def score_planner(p: Planner, rows: Sequence[GsisrRow], seed: int = 0) -> Scores:
    """Acc@1, NDCG@3, NES and validity of a planner's outputs on labelled rows."""
    return score_outputs([r["output"] for r in p.predict(rows)], [r.plan for r in rows], seed=seed)
