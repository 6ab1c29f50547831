"""The LLM teacher for full scale (paper Sec. 3.2: Qwen3-235B prompted few-shot with the seed set).

Prompts carry the system prompt, ``shots`` seed triplets (preferring seeds with the same order
type) as worked user/assistant turns, then the row. Outputs go through the same rule filter as
the offline teacher's candidates.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, Sequence

from ..core.data import GsisrRow
from ..core.intents import dumps_plan
from ..core.llm_client import ChatClient, Messages
from ..core.prompt import PromptOptions, build_messages, user_message
from ..core.rule_filter import Violation, check_output


def passes_filter(reply: str) -> bool:
    """Whether a reply is a label the strict rule filter accepts (only those are cached)."""
    return not check_output(reply, strict=True)


class LLMTeacher:
    def __init__(self, client: ChatClient, seeds: Sequence[dict[str, Any]], shots: int = 3,
                 options: PromptOptions = PromptOptions()):
        if shots and not seeds:
            raise ValueError("few-shot prompting needs a non-empty seed set")
        self.client, self.seeds, self.shots, self.options = client, list(seeds), shots, options

    def _examples(self, row: GsisrRow) -> list[dict[str, Any]]:
        same = [s for s in self.seeds if s["row"]["trigger_1"] == row["trigger_1"]]
        rest = [s for s in self.seeds if s["row"]["trigger_1"] != row["trigger_1"]]
        return (same + rest)[: self.shots]

    def messages(self, row: GsisrRow) -> Messages:
        msgs = build_messages(row, self.options)
        system, target = msgs[:-1], msgs[-1]
        shots: Messages = []
        for s in self._examples(row):
            shots.append({"role": "user", "content": user_message(GsisrRow(s["row"]), self.options)})
            shots.append({"role": "assistant", "content": s["reasoning"] + dumps_plan(s["plan"])})
        return system + shots + [target]

    def replies(self, rows: Sequence[GsisrRow]) -> list[tuple[str, list[Violation]]]:
        """Each row's raw reply and what the strict rule filter finds in it (nothing but the
        reasoning block and the JSON array may be stored as a label)."""
        outputs = self.client.complete_many([self.messages(r) for r in rows], desc="llm teacher", keep=passes_filter)
        return [(text.strip(), check_output(text, strict=True)) for text in outputs]

    def predict(self, rows: Sequence[GsisrRow], desc: str = "llm teacher") -> list[dict[str, Any]]:
        """PRED.jsonl records (``core.planner.Planner``): each row's raw reply, latency of the whole batch
        of concurrent requests spread evenly."""
        t = time.perf_counter()
        outputs = self.client.complete_many([self.messages(r) for r in rows], desc=desc, keep=passes_filter)
        ms = (time.perf_counter() - t) * 1000 / max(1, len(rows))
        return [{"id": r.id, "output": text.strip(), "latency_ms": ms} for r, text in zip(rows, outputs)]

    def label(self, rows: Sequence[GsisrRow]) -> tuple[list[GsisrRow], dict[str, Any]]:
        """Teacher labels for ``rows``; returns the rows whose label passes the filter, and a report."""
        kept, by_rule = [], Counter()
        for row, (text, violations) in zip(rows, self.replies(rows)):
            by_rule.update({f"{v.tier}/{v.rule}" for v in violations})
            if not violations:
                kept.append(row.replace(raw_labels=text))
        return kept, {"candidates": len(rows), "kept": len(kept), "by_rule": dict(sorted(by_rule.items()))}
