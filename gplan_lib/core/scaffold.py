"""The latent multi-token reasoning scaffold of PICD (paper Sec. 4.1.2, Eq. 2-3) and its
forward progressive folding (Sec. 4.1.3), plus the Latent-Valid check (Sec. 5.1.3).

A reasoning path R = <THOUGHT><CONTEXT>..</CONTEXT><STRATEGY>..</STRATEGY><STEP_1>..</STEP_1>..</THOUGHT>
has B = 2 + |Y| blocks (Eq. 3). At stage b the first b blocks, in forward order, are each replaced by
K = 3 reserved tokens (C = <THOUGHT_CONTEXT_a|b|c>, S = <THOUGHT_STRATEGY_a|b|c>, T_i = <T_i_a|b|c>);
the rest stay text. A sample at 1-based epoch e is at stage min(e - 1, B).
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from .intents import MAX_PLAN_LEN
from .parsing import CLOSE, OPEN, parse_output, thought_blocks

K = 3
SUFFIXES = ("a", "b", "c")
OPEN_TAG_RE = re.compile(r"<(CONTEXT|STRATEGY|STEP_\d+)>")
RAW_TAG_RE = re.compile(r"</?(CONTEXT|STRATEGY|STEP_\d+)>")


def find_blocks(text: str) -> list[tuple[str, str]]:
    r"""The (tag, inner text) blocks of ``text``, as ``re.finditer(r"<(CONTEXT|STRATEGY|STEP_\d+)>(.*?)</\1>",
    text, re.S)`` finds them, in one pass: that lazy pattern rescans the rest of the text from every unclosed
    opening tag (19.8 s at 175 KB). Each opening tag is paired with the first matching closing tag after it."""
    closing: dict[str, list[int]] = {}
    for m in RAW_TAG_RE.finditer(text):
        if m.group(0).startswith("</"):
            closing.setdefault(m.group(1), []).append(m.start())
    blocks, pos = [], 0
    while (m := OPEN_TAG_RE.search(text, pos)) is not None:
        ends = closing.get(m.group(1), [])
        k = bisect.bisect_left(ends, m.end())
        if k == len(ends):  # never closed after here: the next opening tag may be
            pos = m.start() + 1
            continue
        blocks.append((m.group(1), text[m.end():ends[k]]))
        pos = ends[k] + len(m.group(1)) + 3
    return blocks


def latent_tokens_for(tag: str) -> list[str]:
    """The K reserved tokens that replace block ``tag`` (CONTEXT, STRATEGY or STEP_i)."""
    if tag in ("CONTEXT", "STRATEGY"):
        return [f"<THOUGHT_{tag}_{s}>" for s in SUFFIXES]
    i = int(tag.split("_")[1])
    if not 1 <= i <= MAX_PLAN_LEN:
        raise ValueError(f"the scaffold has step slots 1..{MAX_PLAN_LEN}, got {tag}")
    return [f"<T_{i}_{s}>" for s in SUFFIXES]


#: All 33 reserved tokens, in scaffold order (C, S, T_1..T_9).
LATENT_TOKENS: tuple[str, ...] = tuple(
    t for tag in ("CONTEXT", "STRATEGY", *(f"STEP_{i}" for i in range(1, MAX_PLAN_LEN + 1))) for t in latent_tokens_for(tag))
LATENT_RE = re.compile("|".join(re.escape(t) for t in LATENT_TOKENS))


@dataclass(frozen=True)
class Reasoning:
    """The blocks of one reasoning path, in order: (tag, text)."""

    blocks: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, thought_inner: str) -> "Reasoning":
        blocks = tuple(find_blocks(thought_inner))
        tags = [t for t, _ in blocks]
        expected = ["CONTEXT", "STRATEGY", *(f"STEP_{i}" for i in range(1, len(tags) - 1))]
        if tags != expected:
            raise ValueError(f"reasoning blocks must be CONTEXT, STRATEGY, STEP_1..n in order; got {tags}")
        return cls(blocks)

    @property
    def n_blocks(self) -> int:
        """B = 2 + |Y| (Eq. 3)."""
        return len(self.blocks)

    def pieces(self, stage: int) -> list[tuple[str, str]]:
        """The folded prefix as (kind, text) pieces: ``latent`` triplets for the first ``stage``
        blocks, ``text`` for the rest, wrapped in <THOUGHT>...</THOUGHT> (kind ``wrap``)."""
        b = max(0, min(stage, self.n_blocks))
        out = [("wrap", "<THOUGHT>")]
        for i, (tag, text) in enumerate(self.blocks):
            out.append(("latent", "".join(latent_tokens_for(tag))) if i < b else ("text", f"<{tag}>{text}</{tag}>"))
        return out + [("wrap", "</THOUGHT>")]

    def fold(self, stage: int) -> str:
        """The reasoning prefix at ``stage`` as one string (Eq. 2 when stage >= B)."""
        return "".join(text for _, text in self.pieces(stage))


def sample_stage(epoch: int, n_blocks: int) -> int:
    """Blocks folded for a sample with B = ``n_blocks`` at 1-based ``epoch``: min(epoch - 1, B)."""
    return max(0, min(epoch - 1, n_blocks))


def latent_valid(text: str, plan_len: int | None = None) -> tuple[bool, str]:
    """Latent-Valid (Sec. 5.1.3): a single <THOUGHT> block holding exactly the scaffold
    C, S, T_1..T_|Y| (no repeats, no out-of-order tokens, no raw XML tags, nothing else), and
    |Y| equal to the JSON plan length (``plan_len`` when the caller has parsed it already).
    Returns (valid, reason)."""
    blocks = thought_blocks(text)
    if len(blocks) != 1 or text.count(OPEN) != 1 or text.count(CLOSE) != 1:
        return False, f"{len(blocks)} closed THOUGHT blocks (need exactly one)"
    inner = blocks[0]
    if RAW_TAG_RE.search(inner):
        return False, "raw reasoning tags left in the prefix"
    found = LATENT_RE.findall(inner)
    leftover = LATENT_RE.sub("", inner).strip()
    if leftover:
        return False, f"text besides latent tokens: {leftover[:30]!r}"
    n = len(parse_output(text).plan) if plan_len is None else plan_len
    expected = [t for tag in ("CONTEXT", "STRATEGY", *(f"STEP_{i}" for i in range(1, n + 1)))
                for t in latent_tokens_for(tag)] if n <= MAX_PLAN_LEN else []
    if found != expected:
        if len(found) != len(set(found)):
            return False, "repeated latent tokens"
        if found and found == sorted(found, key=LATENT_TOKENS.index) and len(found) % K == 0:
            return False, f"{(len(found) // K) - 2} step triplets for a plan of {n} intents"
        return False, "latent tokens missing or out of scaffold order"
    return True, ""
