"""Datasets from real contexts (paper Sec. 3.2, 4.1.1, 4.2.1): the paper's teacher labels *real* user contexts
(Amap logs); this labels the contexts of any GSISR CSV the same way the world's rows are labelled.

``label_contexts``: each context gets a label - the teacher's (the offline expert at temperature 0, or an LLM
teacher) or, with ``labels="gold"``, the row's own plan with its structured reasoning written where it has none
(``reasoning.explain``); K counterfactual perturbations of each context (Sec. 4.2.1), re-planned by the teacher,
become extra training rows and the SC-DPO pairs; every label passes the strict rule filter, and a label that
fails is listed in filter_report.json by source row, id and rule (never dropped unnamed). Train and test are split
**by user id** (an id is a user), so no user is in both. ``mix_datasets`` writes a mixture of dataset folders at
stated shares. Both write the world's dataset layout and a manifest with the sources' sha256.
"""
from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from ..core.data import GsisrRow, load_rows, read_gsisr_csv
from ..core.files import check_manifest, sha256_file
from ..core.rule_filter import check_output
from .counterfactual import PERTURBATIONS, PreferencePair
from .reasoning import explain
from .synthesize import _write_dataset, _writing
from .teacher import ExpertTeacher

Labels = Literal["teacher", "gold"]
LABELS: tuple[str, ...] = ("teacher", "gold")
DATASET_FILES = ("train.csv", "test.csv", "pairs_train.jsonl", "pairs_test.jsonl", "seeds.jsonl", "filter_report.json")


@dataclass
class Labelled:
    """One context (a source row or a perturbation of one) with its label and the filter's verdict."""

    source_row: int          # data-row index in the source CSV
    kind: str                # "context" or the perturbation's name
    row: GsisrRow            # raw_labels holds the label
    rules: list[str]         # failed filter rules ("tier/rule"); empty: accepted


def split_users(ids: Sequence[str], test_share: float, seed: int) -> set[str]:
    """The user ids held out for test: a seeded ``test_share`` of the distinct ids (at least one when > 0)."""
    users = sorted(set(ids))
    random.Random(seed).shuffle(users)
    k = math.ceil(test_share * len(users)) if test_share > 0 else 0
    return set(users[:k])


def _teacher_labels(rows: Sequence[GsisrRow], teacher) -> list[str]:
    """The teacher's label of every row: an LLM teacher's replies (one batch), or the offline expert's."""
    if hasattr(teacher, "replies"):
        return [text for text, _ in teacher.replies(rows)]
    return [teacher.demonstrate(r).label() for r in rows]


def _gold_label(row: GsisrRow) -> str:
    """The row's own label, with the structured reasoning written for its plan where it has none."""
    return row["raw_labels"] if row.thought is not None else explain(row, row.plan).label()


def _judged(source_row: int, kind: str, row: GsisrRow, label: str) -> Labelled:
    violations = check_output(label, strict=True)  # nothing but the reasoning block and the JSON array
    return Labelled(source_row, kind, row.replace(raw_labels=label), sorted({f"{v.tier}/{v.rule}" for v in violations}))


def _perturbations(index: int, row: GsisrRow, k: int, seed: int) -> list[tuple[str, GsisrRow]]:
    """Up to ``k`` counterfactual contexts of ``row``, each a different perturbation, in a seeded order."""
    rng = random.Random(seed * 104_729 + index)
    out = []
    for kind in rng.sample(list(PERTURBATIONS), len(PERTURBATIONS)):
        if len(out) == k:
            break
        if (cf := PERTURBATIONS[kind](row, rng)) is not None:
            out.append((kind, cf))
    return out


def _pairs(contexts: Sequence[Labelled], variants: dict[int, list[Labelled]]) -> list[dict[str, Any]]:
    """Both directions of the first accepted perturbation whose plan differs from its context's (Sec. 4.2.1)."""
    records = []
    for ctx in contexts:
        for cf in variants.get(ctx.source_row, []):
            if not cf.rules and cf.row.plan != ctx.row.plan:
                pid = f"{ctx.row.id}:{ctx.source_row}:{cf.kind}"
                x, x_cf = ctx.row["raw_labels"], cf.row["raw_labels"]
                records += [PreferencePair(pid, "x", cf.kind, ctx.row, x, x_cf).as_record(),
                            PreferencePair(pid, "x'", cf.kind, cf.row, x_cf, x).as_record()]
                break
    return records


def _seed(item: Labelled) -> dict[str, Any]:
    parsed = item.row.parsed_label()
    reasoning = f"<THOUGHT>{parsed.thought}</THOUGHT>" if parsed.thought is not None else ""
    return {"id": item.row.id, "row": item.row.replace(raw_labels="").cells, "reasoning": reasoning, "plan": parsed.plan}


def label_contexts(src: str | Path, out: str | Path, labels: Labels = "teacher", perturb: int = 4,
                   test_share: float = 0.1, seed: int = 0, teacher=None, n_seeds: int = 100,
                   overwrite: bool = False) -> dict[str, Any]:
    """A dataset folder from the contexts of the GSISR CSV ``src`` (see the module docstring); returns the
    manifest. ``teacher``: an ``LLMTeacher`` (default: the offline expert at temperature 0). A malformed row
    of ``src`` is a ``RowError`` naming the file, row, column and rule; with ``labels="teacher"`` the rows'
    own labels may be empty."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    if not 0 <= perturb <= len(PERTURBATIONS):
        raise ValueError(f"perturb must be between 0 and {len(PERTURBATIONS)} (one per perturbation kind), got {perturb}")
    if not 0 <= test_share < 1:
        raise ValueError(f"test_share must be in [0, 1), got {test_share}")
    loaded = read_gsisr_csv(src, labels=labels == "gold")
    if not loaded.rows:
        raise ValueError(f"{src}: no rows to label")
    teacher = teacher or ExpertTeacher()
    teacher_name = ({"url": teacher.client.display_url, "model": teacher.client.model} if hasattr(teacher, "client")
                    else "offline expert teacher (temperature 0)")
    with _writing(out, overwrite) as folder:
        indexed = list(zip(loaded.indices, loaded.rows))
        given = ([_gold_label(r) for _, r in indexed] if labels == "gold"
                 else _teacher_labels([r for _, r in indexed], teacher))
        contexts = [_judged(i, "context", r, text) for (i, r), text in zip(indexed, given)]
        cfs = [(i, kind, cf) for i, r in indexed for kind, cf in _perturbations(i, r, perturb, seed)]
        cf_labels = _teacher_labels([cf for _, _, cf in cfs], teacher)
        variants: dict[int, list[Labelled]] = {}
        for (i, kind, cf), text in zip(cfs, cf_labels):
            variants.setdefault(i, []).append(_judged(i, kind, cf, text))
        held_out = split_users([r.id for r in loaded.rows], test_share, seed)
        train_ctx = [c for c in contexts if not c.rules and c.row.id not in held_out]
        test_ctx = [c for c in contexts if not c.rules and c.row.id in held_out]
        train_sources = [c.source_row for c in contexts if c.row.id not in held_out]  # a rejected context's
        rounds = [[v[k] for i in train_sources if len(v := variants.get(i, [])) > k and not v[k].rules]  # perturbations
                  for k in range(perturb)]  # still train; perturbation k of every context, round by round
        train = [c.row for c in train_ctx] + [v.row for rnd in rounds for v in rnd]
        judged = contexts + [v for vs in variants.values() for v in vs]
        failed = [x for x in judged if x.rules]
        by_rule = Counter(rule for x in failed for rule in x.rules)
        report = {
            "source": str(src), "contexts": len(contexts), "users": len({r.id for r in loaded.rows}),
            "test_users": len(held_out), "candidates": len(judged), "rejected": len(failed),
            "rejection_rate": len(failed) / len(judged), "by_rule": dict(sorted(by_rule.items())),
            "by_tier": dict(sorted(Counter(r.split("/")[0] for x in failed for r in set(x.rules)).items())),
            "failures": [{"row": x.source_row, "id": x.row.id, "what": x.kind, "rules": x.rules} for x in failed],
        }
        config = {"source": Path(src).name, "source_sha256": sha256_file(src), "labels": labels, "perturb": perturb,
                  "test_share": test_share, "seed": seed, "teacher": teacher_name}  # as ensure_contexts expects it
        pairs = {"pairs_train.jsonl": (len(train_ctx), _pairs(train_ctx, variants)),
                 "pairs_test.jsonl": (len(test_ctx), _pairs(test_ctx, variants))}
        return _write_dataset(folder, config, train, [c.row for c in test_ctx], pairs,
                              [_seed(c) for c in train_ctx[:n_seeds]], report, [len(r.plan) for r in train],
                              f"gplan_lib.synthesis.contexts (real contexts, {labels} labels, {teacher_name})")


def ensure_contexts(src: str | Path, out: str | Path, labels: Labels = "teacher", perturb: int = 4,
                    test_share: float = 0.1, seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """``label_contexts`` with the offline teacher, reusing ``out`` when it already holds this dataset (same source
    digest and settings, files intact); a different dataset there is replaced only with ``overwrite``."""
    config = {"source": Path(src).name, "source_sha256": sha256_file(src), "labels": labels, "perturb": perturb,
              "test_share": test_share, "seed": seed, "teacher": "offline expert teacher (temperature 0)"}
    manifest = Path(out) / "manifest.json"
    if manifest.is_file():
        have = json.loads(manifest.read_text(encoding="utf-8"))
        if have.get("config") == config:
            check_manifest(out, DATASET_FILES)
            return have
    return label_contexts(src, out, labels, perturb, test_share, seed, overwrite=overwrite)


def mix_datasets(parts: Sequence[tuple[str | Path, float]], n_train: int, out: str | Path, seed: int = 0,
                 overwrite: bool = False) -> dict[str, Any]:
    """A dataset of ``n_train`` training rows drawn from dataset folders at stated shares (``parts``: (folder,
    share), shares summing to 1): the first round(share * n_train) rows of each part's train.csv, in a seeded
    order; every part's training pairs; test.csv, the test pairs and the seeds of the first part. A folder that
    already holds this very mixture (same parts, digests, shares, size and seed) is reused."""
    if not parts:
        raise ValueError("mix_datasets needs at least one dataset folder")
    if any(share <= 0 for _, share in parts) or not math.isclose(sum(s for _, s in parts), 1.0, abs_tol=1e-6):
        raise ValueError(f"shares must be positive and sum to 1, got {[s for _, s in parts]}")
    counts = [round(share * n_train) for _, share in parts[:-1]]
    counts.append(n_train - sum(counts))
    for folder, _ in parts:
        check_manifest(folder, DATASET_FILES)
    sources = [{"dataset": str(folder), "manifest_sha256": sha256_file(Path(folder) / "manifest.json"), "share": share,
                "rows": k} for (folder, share), k in zip(parts, counts)]
    config = {"mix": sources, "n_train": n_train, "seed": seed}
    manifest = Path(out) / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")).get("config") == config:
        check_manifest(out, DATASET_FILES)
        return json.loads(manifest.read_text(encoding="utf-8"))  # the same mixture: reused
    rows, pairs = [], []
    for (folder, share), k in zip(parts, counts):
        folder = Path(folder)
        have = load_rows(folder / "train.csv")
        if len(have) < k:
            raise ValueError(f"{folder / 'train.csv'}: {len(have)} rows; a share of {share} of {n_train} needs {k}")
        rows += have[:k]
        pairs += (folder / "pairs_train.jsonl").read_text(encoding="utf-8").splitlines()  # JSON lines, parsed once below
    random.Random(seed).shuffle(rows)
    first = Path(parts[0][0])
    train_pairs, test_pairs = [json.loads(x) for x in pairs if x], _records(first / "pairs_test.jsonl")
    with _writing(out, overwrite) as folder:
        return _write_dataset(
            folder, config, rows, load_rows(first / "test.csv"),
            {"pairs_train.jsonl": (len(train_pairs) // 2, train_pairs), "pairs_test.jsonl": (len(test_pairs) // 2, test_pairs)},
            _records(first / "seeds.jsonl"), {"mixture": sources}, [len(r.plan) for r in rows],
            "gplan_lib.synthesis.contexts (mixture)")


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
