"""Decoding that cannot produce an invalid plan: the latent scaffold (Sec. 4.1.2) and the intent
library's JSON grammar (Sec. 3.1, the filter rules of Sec. 3.2) as a constraint on greedy decoding.

The output is cut into segments at points where the byte-level BPE pre-tokeniser always splits
(a punctuation run meets a digit or a word), so a segment tokenises the same alone as inside the
whole text, i.e. as in training. At each segment the grammar lists the admissible alternatives
(a latent triplet or the end of the scaffold; every intent allowed after the ones so far, with the
separator that follows it) and their token sequences form a trie. Walking the trie, a node with
one child is a token the grammar forces: it is appended without asking the model, and all tokens
appended since the last model choice go through the model in one forward pass (KV cache) when the
next real choice comes. The model only ranks admissible tokens, so every output passes the rule
filter and Latent-Valid by construction.

Written by hand rather than with a grammar library: the constraint is small and specific (a fixed
library, cross-intent rules, a scaffold whose length fixes the plan length), and the one-pass
appending of forced runs is the point being measured.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..core.data import GsisrRow
from ..core.intents import (
    ADMISSIBLE,
    MAX_PLAN_LEN,
    MIN_PLAN_LEN,
    MUTUAL_EXCLUSION,
    PREVIOUS_RESULT,
    TOOL_KEY,
    TOOLS,
    Intent,
)
from ..core.prompt import build_messages
from ..core.scaffold import latent_tokens_for
from ..training.generation import StudentPlanner
from ..training.modeling import chat_prompt

PLAN_HEAD = '[{"工具名称":"tool_'
NEXT_INTENT, PLAN_END = '"},{"工具名称":"tool_', '"}]'


def all_intents() -> list[Intent]:
    """Every intent the library admits: each tool with every combination of admissible values."""
    out = []
    for tool in TOOLS.values():
        for values in itertools.product(*(ADMISSIBLE[p] for p in tool.params)):
            out.append({TOOL_KEY: tool.name, **dict(zip(tool.params, values))})
    return out


def unit_text(intent: Intent, last: bool) -> str:
    """An intent's text from its tool number on, with the separator after it (see module doc)."""
    body = "".join(f'","{k}":"{v}' for k, v in intent.items() if k != TOOL_KEY)
    return intent[TOOL_KEY].removeprefix("tool_") + body + (PLAN_END if last else NEXT_INTENT)


def admissible(intent: Intent, before: Sequence[Intent]) -> bool:
    """The logic tier as a constraint: no duplicate, one intent of the exclusive group at most,
    ``前一位推荐结果`` only right after an intent that yields a place."""
    if intent in before:
        return False
    if intent[TOOL_KEY] in MUTUAL_EXCLUSION and any(a[TOOL_KEY] in MUTUAL_EXCLUSION for a in before):
        return False
    if PREVIOUS_RESULT in intent.values():
        return bool(before) and TOOLS[before[-1][TOOL_KEY]].produces_place
    return True


@dataclass
class Decoded:
    """One constrained output with its wall time, generated tokens and model forward passes."""

    output: str
    latency_ms: float
    new_tokens: int
    forward_passes: int


class ConstrainedPlanner:
    """Greedy decoding of a saved Direct-SFT or PICD student under the plan grammar (batch 1)."""

    def __init__(self, student: StudentPlanner):
        if student.mode not in ("direct", "picd"):
            raise ValueError(f"constrained decoding covers direct and picd students; a {student.mode!r} student "
                             "writes free-text reasoning that no grammar fixes")
        self.student, self.latent = student, student.mode == "picd"
        self.tok = student.tokenizer
        self._ids: dict[str, tuple[int, ...]] = {}

    def ids(self, text: str) -> tuple[int, ...]:
        """Token ids of a grammar segment (cached: the segments repeat across rows)."""
        if text not in self._ids:
            self._ids[text] = tuple(self.tok(text, add_special_tokens=False)["input_ids"])
        return self._ids[text]

    @cached_property
    def intents(self) -> list[Intent]:
        return all_intents()

    def _start(self, row: GsisrRow) -> None:
        prompt = chat_prompt(self.tok, build_messages(row, self.student.options))
        self.pending = list(self.tok(prompt, add_special_tokens=False)["input_ids"])  # not cached: one per row
        self.generated: list[int] = []
        self.past, self.passes = None, 0

    def _emit(self, tokens: Sequence[int]) -> None:
        self.pending += tokens
        self.generated += tokens

    def _choose(self, options: Sequence[int]) -> int:
        """The model's greedy pick among ``options`` (the first of equals), after one forward pass over everything
        pending: logits at the last position only, read back once."""
        out = self.student.model(input_ids=torch.tensor([self.pending], device=self.student.device),
                                 past_key_values=self.past, use_cache=True, logits_to_keep=1)
        self.past, self.pending, self.passes = out.past_key_values, [], self.passes + 1
        scores = out.logits[0, -1, torch.tensor(options, device=out.logits.device)]  # (len(options),)
        return options[int(scores.argmax())]

    def _walk(self, alternatives: Sequence[tuple[int, ...]]) -> int:
        """Follow the trie of ``alternatives`` (prefix-free token sequences); returns the index chosen."""
        trie: dict = {}
        for i, seq in enumerate(alternatives):
            node = trie
            for t in seq:
                node = node.setdefault(t, {})
            node[None] = i
        node = trie
        while None not in node:
            tok = next(iter(node)) if len(node) == 1 else self._choose(list(node))
            self._emit([tok])
            node = node[tok]
        return node[None]

    def _scaffold(self) -> int:
        """<THOUGHT> C S T_1..T_n </THOUGHT> with the model choosing n in [MIN, MAX]; returns n."""
        head = "".join(["<THOUGHT>", *latent_tokens_for("CONTEXT"), *latent_tokens_for("STRATEGY"),
                        *(t for i in range(1, MIN_PLAN_LEN + 1) for t in latent_tokens_for(f"STEP_{i}"))])
        self._emit(self.ids(head))
        close = self.ids("</THOUGHT>") + self.ids(PLAN_HEAD)  # tokenised apart in training (picd.encode)
        n = MIN_PLAN_LEN
        while n < MAX_PLAN_LEN and self._walk([self.ids("".join(latent_tokens_for(f"STEP_{n + 1}"))), close]) == 0:
            n += 1
        if n == MAX_PLAN_LEN:
            self._emit(close)
        return n

    def _plan(self, n: int | None) -> None:
        """The JSON plan, intent by intent; ``n`` fixes its length (from the scaffold) when given."""
        plan: list[Intent] = []
        while True:
            i = len(plan) + 1
            if n:
                ends = [i == n]
            else:
                ends = [False] * (i < MAX_PLAN_LEN) + [True] * (i >= MIN_PLAN_LEN)
            options = [(a, last) for a in self.intents if admissible(a, plan) for last in ends]
            a, last = options[self._walk([self.ids(unit_text(a, last)) for a, last in options])]
            plan.append(a)
            if last:
                return

    @torch.inference_mode()
    def decode(self, row: GsisrRow) -> Decoded:
        t = time.perf_counter()
        self._start(row)
        if self.latent:
            n = self._scaffold()
        else:
            self._emit(self.ids(PLAN_HEAD))
            n = None
        self._plan(n)
        self._emit([self.tok.eos_token_id])
        ms = (time.perf_counter() - t) * 1000
        return Decoded(self.tok.decode(self.generated, skip_special_tokens=True), ms, len(self.generated), self.passes)

    def predict(self, rows: Sequence[GsisrRow], desc: str = "constrained") -> list[dict]:
        """PRED.jsonl records (``core.planner.Planner``), as ``StudentPlanner`` writes them, plus forward passes."""
        records = []
        for row in tqdm(rows, desc=desc):
            d = self.decode(row)
            records.append({"id": row.id, "output": d.output, "latency_ms": d.latency_ms,
                            "new_tokens": d.new_tokens, "forward_passes": d.forward_passes})
        return records
