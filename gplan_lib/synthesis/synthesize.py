"""The human-in-the-loop synthesis pipeline of paper Sec. 3.2, offline.

World rows -> teacher candidates (a share of them with LLM-like mistakes) -> the rule filter ->
train/test split -> counterfactual pairs (Sec. 4.2.1) -> files with a manifest. The seed set of
expert triplets (teacher at temperature 0 on separate contexts) is written beside them for the
review panel and for the LLM teacher's few-shot prompts. Same config -> byte-identical files.
"""
from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import random
from collections import Counter
from dataclasses import asdict, dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from tqdm.auto import tqdm

from ..core.data import GsisrRow, write_gsisr_csv
from ..core.files import atomic_write, folder_lock, sha256_file, write_json
from ..core.parsing import parse_output
from ..core.rule_filter import check_parsed
from .config import EXECUTION_ONLY, SynthConfig
from .counterfactual import make_pairs
from .noisy_teacher import MISTAKES, corrupt
from .teacher import ExpertTeacher
from .world import simulate_row

SEED_INDEX_OFFSET = 50_000_000


@dataclass
class Candidate:
    index: int
    cells: dict[str, str]
    mistake: str | None
    violations: list[tuple[str, str]]
    plan_len: int


def _candidates(args: tuple[SynthConfig, int, int]) -> list[Candidate]:
    cfg, start, stop = args
    teacher, out = ExpertTeacher(cfg.temperature), []
    for i in range(start, stop):
        row = simulate_row(cfg.seed, i, cfg.world_params)
        rng = random.Random((cfg.seed + 1) * 7_919_993 + i)
        demo = teacher.demonstrate(row, rng)
        label, mistake = corrupt(demo, rng) if rng.random() < cfg.noise_rate else (demo.label(), None)
        parsed = parse_output(label)
        out.append(Candidate(i, row.replace(raw_labels=label).cells, mistake,
                             [(v.tier, v.rule) for v in check_parsed(parsed)], len(parsed.plan)))
    return out


def _pairs(args: tuple[int, list[dict[str, str]]]) -> list[dict[str, Any]]:
    seed, rows = args
    teacher = ExpertTeacher()
    return [p.as_record() for cells in rows
            for p in make_pairs(GsisrRow(cells), random.Random(seed * 104_729 + int(cells["id"])), teacher)]


@contextlib.contextmanager
def _workers(n: int) -> Iterator[Pool | None]:
    """``n`` worker processes for one synthesis (None: it runs here). Leaving the block - an error, Ctrl-C,
    or SIGTERM turned into SystemExit by the CLI - terminates them. Spawned, not forked: a forked worker
    inherits the CLI's SIGTERM handler and this process's threads (tqdm's monitor, OpenBLAS), and at the
    pool's close one such worker could block forever on the task queue's lock, hanging `gplan synth`
    (12 runs in 96 on 2 cores). A spawned worker starts clean and dies on SIGTERM."""
    if n <= 1:
        yield None
        return
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        yield pool


def _parallel(fn: Callable, jobs: Sequence, pool: Pool | None, desc: str) -> Iterator:
    """Results of ``fn`` over ``jobs`` in job order, from ``pool``'s workers or here."""
    yield from tqdm(pool.imap(fn, jobs) if pool else map(fn, jobs), total=len(jobs), desc=desc)


def seed_set(cfg: SynthConfig) -> list[dict[str, Any]]:
    """Expert triplets (context row, reasoning, plan) from the teacher at temperature 0."""
    teacher, seeds = ExpertTeacher(), []
    for i in range(cfg.n_seeds):
        row = simulate_row(cfg.seed, SEED_INDEX_OFFSET + i, cfg.world_params)
        demo = teacher.demonstrate(row)
        seeds.append({"id": row.id, "row": row.cells, "reasoning": demo.reasoning(), "plan": demo.plan})
    return seeds


def _write_jsonl(path: Path, records: Iterable[dict]) -> None:
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


@contextlib.contextmanager
def _writing(out_dir: str | Path, overwrite: bool) -> Iterator[Path]:
    """The output folder, held against a second writer for the whole synthesis (a second `gplan synth` on the
    same --out is refused, not raced); an existing non-empty folder is replaced only with ``overwrite``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file, not a folder")
    with folder_lock(out, "gplan synth"):
        if any(out.iterdir()) and not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace its files")
        yield out


def _accept(cfg: SynthConfig, pool: Pool | None, report: dict[str, Any]) -> list[Candidate]:
    """Teacher candidates through the rule filter until ``cfg.n`` pass; tallies ``report`` on the way."""
    accepted: list[Candidate] = []
    start = 0
    while len(accepted) < cfg.n:
        need = cfg.n - len(accepted)
        span = max(cfg.chunk, int(need / (1 - cfg.noise_rate) * 1.05) + 1)
        jobs = [(cfg, s, min(s + cfg.chunk, start + span)) for s in range(start, start + span, cfg.chunk)]
        for chunk in _parallel(_candidates, jobs, pool, "candidates"):
            for c in chunk:
                if len(accepted) == cfg.n:
                    break
                report["candidates"] += 1
                if c.mistake:
                    report["injected"][c.mistake] += 1
                    report["caught"][c.mistake] += any(rule == MISTAKES[c.mistake][2] for _, rule in c.violations)
                report["clean_rejected"] += bool(c.violations) and not c.mistake
                report["mistakes_passed"] += bool(c.mistake) and not c.violations
                if c.violations:
                    report["rejected"] += 1
                    report["by_rule"].update(f"{t}/{r}" for t, r in set(c.violations))
                    report["by_tier"].update({t for t, _ in c.violations})
                else:
                    accepted.append(c)
        start += span
    return accepted


def synthesize(cfg: SynthConfig, out_dir: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Build the dataset into ``out_dir``; returns the manifest (also written as manifest.json)."""
    report = {"candidates": 0, "rejected": 0, "by_rule": Counter(), "by_tier": Counter(),
              "injected": Counter(), "caught": Counter(), "clean_rejected": 0, "mistakes_passed": 0}
    with _writing(out_dir, overwrite) as out:
        with _workers(cfg.workers) as pool:
            accepted = _accept(cfg, pool, report)
            train, test = _split([GsisrRow(c.cells) for c in accepted], cfg)
            anchor_sets = {"pairs_train.jsonl": train[: cfg.pair_anchors],
                           "pairs_test.jsonl": test[: cfg.test_size // 2]}
            pairs = {}
            for name, anchors in anchor_sets.items():
                jobs = [(cfg.seed, [r.cells for r in anchors[s:s + 500]]) for s in range(0, len(anchors), 500)]
                pairs[name] = (len(anchors), [rec for chunk in _parallel(_pairs, jobs, pool, name) for rec in chunk])
        train_ids = {r.id for r in train}
        lengths = [c.plan_len for c in accepted if c.cells["id"] in train_ids]
        filter_report = {
            "candidates": report["candidates"], "rejected": report["rejected"],
            "rejection_rate": report["rejected"] / report["candidates"],
            "by_tier": dict(sorted(report["by_tier"].items())), "by_rule": dict(sorted(report["by_rule"].items())),
            "injected": dict(sorted(report["injected"].items())), "caught": dict(sorted(report["caught"].items())),
            "clean_candidates_rejected": report["clean_rejected"], "mistakes_that_passed": report["mistakes_passed"],
        }
        return _write_dataset(out, recorded_config(cfg), train, test, pairs, seed_set(cfg), filter_report, lengths,
                              "gplan_lib.synthesis (offline expert teacher, simulated world)")


def _split(rows: list[GsisrRow], cfg: SynthConfig) -> tuple[list[GsisrRow], list[GsisrRow]]:
    """The train/test split of the accepted rows: a seeded shuffle picks the test rows."""
    order = list(range(len(rows)))
    random.Random(cfg.seed).shuffle(order)
    test_idx = set(order[: cfg.test_size])
    return [rows[i] for i in range(len(rows)) if i not in test_idx], [rows[i] for i in sorted(test_idx)]


def _write_dataset(out: Path, config: dict[str, Any], train: list[GsisrRow], test: list[GsisrRow],
                   pairs: dict[str, tuple[int, list[dict[str, Any]]]], seeds: list[dict[str, Any]], filter_report: dict[str, Any],
                   train_plan_lengths: list[int], generator: str) -> dict[str, Any]:
    """The dataset's files and its manifest (``config``: what determined the files; counts; sha256 per file)."""
    pair_counts = {}
    for name, (n_anchors, records) in pairs.items():
        _write_jsonl(out / name, records)
        pair_counts[name] = {"anchors": n_anchors, "records": len(records),
                             "by_perturbation": dict(Counter(r["perturbation"] for r in records[::2]))}
    write_gsisr_csv(train, out / "train.csv", overwrite=True)
    write_gsisr_csv(test, out / "test.csv", overwrite=True)
    _write_jsonl(out / "seeds.jsonl", seeds)
    write_json(out / "filter_report.json", filter_report, indent=1)
    files = ["train.csv", "test.csv", "pairs_train.jsonl", "pairs_test.jsonl", "seeds.jsonl", "filter_report.json"]
    manifest = {
        "generator": generator,
        "config": config,
        "counts": {"train": len(train), "test": len(test), "seeds": len(seeds), **pair_counts,
                   "mean_plan_length": sum(train_plan_lengths) / max(1, len(train_plan_lengths))},
        "sha256": {f: sha256_file(out / f) for f in files},
    }
    write_json(out / "manifest.json", manifest, indent=1)  # last: a dataset without it is not one
    return manifest


#: An LLM synthesis asks for at most this many labels per sample it keeps (plus LLM_ALLOWANCE), and gives up
#: early when, after LLM_ALLOWANCE replies, fewer than MIN_ACCEPTANCE of them pass the filter.
LLM_REQUESTS_PER_SAMPLE, LLM_ALLOWANCE, MIN_ACCEPTANCE = 4, 32, 0.05


def synthesize_llm(cfg: SynthConfig, out_dir: str | Path, teacher, overwrite: bool = False,
                   max_batch: int = 64) -> dict[str, Any]:
    """The same dataset layout with an ``LLMTeacher`` writing the labels (Sec. 3.2 at full scale):
    contexts from the simulated world, every reply through the strict rule filter, counterfactual
    pairs re-planned by the same teacher, the seed set it was prompted with, a filter report and a
    manifest that names the server (credentials removed) and model. Work is bounded: each batch asks for
    what the acceptance rate so far says is still needed (at most ``max_batch``), and the whole run for at
    most ``LLM_REQUESTS_PER_SAMPLE * n + LLM_ALLOWANCE`` labels; a collapsed acceptance rate is an error
    naming the rules the replies fail."""
    from ..core.llm_client import LLMError
    cap = LLM_REQUESTS_PER_SAMPLE * cfg.n + LLM_ALLOWANCE
    with _writing(out_dir, overwrite) as out:
        accepted: list[GsisrRow] = []
        by_rule: Counter = Counter()
        candidates = index = 0  # replies judged; rows asked for (the replies after the n-th accepted are unused)
        while len(accepted) < cfg.n:
            rate = len(accepted) / candidates if candidates else 1.0
            if index >= cap or (candidates >= LLM_ALLOWANCE and rate < MIN_ACCEPTANCE):
                common = ", ".join(f"{rule} {n}" for rule, n in by_rule.most_common(3))
                raise LLMError(f"{teacher.client.display_url}: {len(accepted)} of {candidates} teacher replies passed "
                               f"the rule filter ({cfg.n} samples asked for, at most {cap} requests); the replies "
                               f"fail {common or 'nothing (too few were asked for)'}: check the server, model and prompt")
            need = cfg.n - len(accepted)
            batch = min(max_batch, cap - index, max(need, math.ceil(need / max(rate, MIN_ACCEPTANCE) * 1.1)))
            rows = [simulate_row(cfg.seed, i, cfg.world_params) for i in range(index, index + batch)]
            index += batch
            for row, (text, violations) in zip(rows, teacher.replies(rows)):
                if len(accepted) == cfg.n:
                    break
                candidates += 1
                by_rule.update({f"{v.tier}/{v.rule}" for v in violations})
                if not violations:
                    accepted.append(row.replace(raw_labels=text))
        train, test = _split(accepted, cfg)
        anchor_sets = {"pairs_train.jsonl": train[: cfg.pair_anchors], "pairs_test.jsonl": test[: cfg.test_size // 2]}
        pairs = {name: (len(a), _llm_pairs(a, teacher, cfg.seed)) for name, a in anchor_sets.items()}
        report = {"candidates": candidates, "rejected": candidates - len(accepted),
                  "rejection_rate": (candidates - len(accepted)) / candidates, "by_rule": dict(sorted(by_rule.items()))}
        config = {**recorded_config(cfg), "teacher": {"url": teacher.client.display_url, "model": teacher.client.model}}
        return _write_dataset(out, config, train, test, pairs, teacher.seeds, report, [len(r.plan) for r in train],
                              "gplan_lib.synthesis (LLM teacher, simulated world)")


def _llm_pairs(anchors: Sequence[GsisrRow], teacher, seed: int) -> list[dict[str, Any]]:
    """Both directions of the first perturbation (in a seeded random order) whose re-planned label
    passes the filter and differs from the anchor's plan; all counterfactual contexts are asked for
    in one batch."""
    from .counterfactual import PERTURBATIONS, PreferencePair
    options = []
    for row in anchors:
        rng = random.Random(seed * 104_729 + int(row.id))
        options.append([(k, cf) for k in rng.sample(list(PERTURBATIONS), len(PERTURBATIONS))
                        if (cf := PERTURBATIONS[k](row, rng)) is not None])
    flat = [cf for opts in options for _, cf in opts]
    replies = iter(teacher.replies(flat))
    records = []
    for row, opts in zip(anchors, options):
        found = None
        for kind, cf in opts:
            text, violations = next(replies)
            if found is None and not violations and parse_output(text).plan != row.plan:
                found = (kind, cf, text)
        if found:
            kind, cf, text = found
            pid = f"{row.id}:{kind}"
            records += [PreferencePair(pid, "x", kind, row, row["raw_labels"], text).as_record(),
                        PreferencePair(pid, "x'", kind, cf, text, row["raw_labels"]).as_record()]
    return records


def recorded_config(cfg: SynthConfig) -> dict[str, Any]:
    """The part of a config that determines the files (what the manifest records; the built-in world
    is recorded by its absence, as before worlds could be fitted)."""
    return {k: v for k, v in asdict(cfg).items() if k not in EXECUTION_ONLY and not (k == "world" and v is None)}


def ensure_dataset(cfg: SynthConfig, out_dir: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Reuse the dataset in ``out_dir`` when its manifest records this config and its files match
    their hashes; otherwise build it (replacing a different dataset only with ``overwrite``)."""
    out = Path(out_dir)
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            intact = all((out / f).is_file() and sha256_file(out / f) == h for f, h in manifest["sha256"].items())
            same = manifest["config"] == recorded_config(cfg) and intact
        except (ValueError, KeyError, TypeError, AttributeError):  # an unreadable manifest: not this dataset
            same = False
        if same:
            return manifest
        if not overwrite:
            raise FileExistsError(f"{out} holds a different, modified or unreadable dataset; pass overwrite=True "
                                  "(--overwrite) to rebuild it")
    return synthesize(cfg, out, overwrite=overwrite)
