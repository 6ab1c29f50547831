"""The runs behind Table 4 (paper Sec. 5.4): PICD-CALR, + vanilla DPO, + SC-DPO, on the
bidirectional counterfactual pairs, with context-sensitivity measures that need no LLM and can move
in both directions (``sensitivity``):

* the double difference DD = [log pi(y_a|x) - log pi(y_a|x')] - [log pi(y_b|x) - log pi(y_b|x')] per
  held-out pair (y_a matched to x, y_b to x'): > 0 when the model ties each plan to its own context.
  A context-blind model has DD = 0; its share > 0 and mean (nats) are reported.
* reward accuracy: held-out records where the implicit reward beta*log(pi/pi_ref) of y+ beats y-'s
  (the reference itself has no reward: None);
* preference accuracy (log pi(y+|x) > log pi(y-|x)), kept for comparison: on pairs stored in both
  directions it is 0.5 by construction for a model that ignores the context, so it cannot show
  sensitivity going up or down;
* the generation-level flip rate.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..core.config import as_written, output_dirs, replace
from ..core.data import GsisrRow, load_rows
from ..core.files import check_manifest, sha256_file, write_json
from ..core.metrics import Scores, nes
from ..core.paper import SC_DPO_SETTINGS
from ..core.parsing import parse_output
from ..core.prompt import PromptOptions
from ..picd.config import PICDConfig
from ..training.checkpoints import checkpoint, config_key, data_checkpoint, is_trained, train_or_reuse
from ..training.config import EvalConfig, ModelConfig
from ..training.generation import MODEL_CARD, StudentPlanner, evaluate_student
from ..training.launch import Launch, require_device, train_argv
from ..training.modeling import default_device, load, load_for_training
from ..training.parallel import process_state, run_jobs
from .config import SCDPOConfig, SCDPOLoss
from .trainer import EncodedPair, encode_pairs, make_dpo_trainer, pair_logps, read_pairs

#: Table 4's two post-training variants (row name -> variant) from the PICD-CALR student.
DPO_VARIANTS = {"+ Vanilla DPO": "vanilla", "+ SC-DPO": "sc"}


def ids_digest(pairs: Sequence[EncodedPair]) -> str:
    """A hash of the encoded token ids of every pair (prompt, chosen, rejected)."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.prompt, p.chosen, p.rejected]).encode())
    return h.hexdigest()[:16]


def weights_digest(directory: str | Path) -> str:
    """A hash of a saved model's weight files."""
    h = hashlib.sha256()
    for f in sorted(Path(directory).glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def likelihood_sensitivity(chosen: np.ndarray, rejected: np.ndarray, records: Sequence[dict[str, Any]],
                           ref: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """The double difference per pair, reward accuracy (with a reference) and preference accuracy,
    from log pi(y+|x) and log pi(y-|x) of pair records stored in both directions."""
    margin: dict[str, list[float]] = {}  # pair id -> [log pi(y+|x) - log pi(y-|x)] of both directions
    for rec, m in zip(records, chosen - rejected, strict=True):
        margin.setdefault(rec["pair_id"], []).append(float(m))
    dd = np.array([sum(v) for v in margin.values() if len(v) == 2])  # = DD: the two margins add up to it
    reward_gap = None if ref is None else (chosen - ref[0]) - (rejected - ref[1])
    return {"double_difference_positive": float(np.mean(dd > 0)), "double_difference_mean": float(np.mean(dd)),
            "reward_accuracy": None if reward_gap is None else float(np.mean(reward_gap > 0)),
            "preference_accuracy": float(np.mean(chosen > rejected)), "logp_chosen_mean": float(np.mean(chosen)),
            "dd_pairs": int(dd.size)}


def saved_pair_logps(directory: str | Path, pairs: Sequence[EncodedPair], pad_id: int, batch_size: int,
                     response_only: bool = False, bf16: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """log pi(y+|x) and log pi(y-|x) of every pair under the student saved in ``directory`` (fp32 weights,
    under bf16 autocast when its scale trains so, as the reference was scored)."""
    model = load(directory, torch.float32)[0].to(default_device())
    return pair_logps(model, pairs, pad_id, batch_size, desc="held-out pairs", response_only=response_only, bf16=bf16)


class SCDPOExperiment:
    """SC-DPO and vanilla DPO from one PICD checkpoint, on the pairs of a synthetic dataset."""

    def __init__(self, scale: str, seed: int = 0, *, base: str | Path | None = None, work: str | Path | None = None,
                 data: str | Path | None = None):
        """``base``: the PICD student to start from (default: this seed's PICD-CALR); ``work``: where the
        variants go (default ``checkpoint(scale, seed=seed)``); ``data``: a dataset folder whose pairs to train
        on (default: the scale's data/synth/<scale>/)."""
        self.scale, self.seed = scale, seed
        picd = PICDConfig.from_scale(scale)
        require_device(picd.model, scale)  # before anything loads: a Qwen3 backbone needs a GPU
        self._launch = {"base": base, "work": work, "data": data}  # what `gplan train` rebuilds it from
        self.cfg = SCDPOConfig.from_scale(scale)
        self.model_cfg: ModelConfig = picd.model
        self.eval_cfg: EvalConfig = picd.eval
        self.dirs = output_dirs(scale)
        home = data_checkpoint(scale, data, seed) if data else checkpoint(scale, seed=seed)
        self.work = Path(work) if work else home
        self.base = Path(base) if base else home / "picd-calr"
        if not (self.base / MODEL_CARD).is_file():
            raise FileNotFoundError(f"{self.base} has no PICD student: run notebooks/02_picd.ipynb at scale {scale!r} first")
        self.base_card = json.loads((self.base / MODEL_CARD).read_text())
        self.base_key = self.base_card.get("key", str(self.base))
        self.options = PromptOptions(**self.base_card["prompt_options"])
        self.data_dir = Path(data) if data else self.dirs.data
        check_manifest(self.data_dir, ("pairs_train.jsonl", "pairs_test.jsonl", "test.csv"))
        self.data_key = {"data": sha256_file(self.data_dir / "manifest.json")} if data else {}  # in the run key
        self.train_records = read_pairs(self.data_dir / "pairs_train.jsonl")[: self.cfg.n_pairs]
        self.test_records = read_pairs(self.data_dir / "pairs_test.jsonl")[: self.cfg.n_test_pairs]
        self.test_rows = load_rows(self.data_dir / "test.csv")[: picd.n_eval]
        self.work.mkdir(parents=True, exist_ok=True)
        from transformers import AutoTokenizer
        self.tokenizer = AutoTokenizer.from_pretrained(self.base)
        self.train_pairs = encode_pairs(self.train_records, self.tokenizer, self.options)
        self.test_pairs = encode_pairs(self.test_records, self.tokenizer, self.options)
        self.base_digest = weights_digest(self.base)  # read once: the cache key and the sensitivity both need it
        self._has_reference = False

    @property
    def reference_cache(self) -> Path:
        return self.work / "reference_logps.json"

    @property
    def reference_key(self) -> str:
        """What the reference log-probs depend on: the encoded ids and the reference weights."""
        return config_key({"base": self.base_key, "weights": self.base_digest,
                           "train_ids": ids_digest(self.train_pairs), "test_ids": ids_digest(self.test_pairs),
                           **({"response_only": True} if self.response_only else {}),
                           **({"bf16_autocast": True} if self.cfg.train.bf16 else {})})

    def reference_cached(self) -> bool:
        cache = self.reference_cache
        return cache.is_file() and json.loads(cache.read_text()).get("key") == self.reference_key

    def reference(self) -> None:
        """Reference log-probs of the PICD model on every training and held-out pair (Eq. 8's pi_ref), under
        the autocast the policy trains in (so that rewards are 0 at step 0), computed once by a launched
        ``gplan train --method dpo-reference`` (in a process group each rank scores a share) and cached under
        ``reference_key`` (a change of the ids or the weights recomputes them)."""
        if self._has_reference:
            return
        cache, key = self.reference_cache, self.reference_key
        ref = json.loads(cache.read_text()) if cache.is_file() else {}
        if ref.get("key") != key:
            state = process_state()
            model = load_for_training(self.base, self.tokenizer, self.model_cfg).to(state.device)
            ref = {"key": key}
            for split, pairs in (("train", self.train_pairs), ("test", self.test_pairs)):
                c, r = pair_logps(model, pairs[state.process_index::state.num_processes], self.tokenizer.pad_token_id,
                                  self.cfg.eval_batch_size, desc=f"reference log-probs ({split})",
                                  response_only=self.response_only, bf16=self.cfg.train.bf16)
                ref[split] = _interleave(c.tolist(), r.tolist(), state, len(pairs))
            if state.is_main_process:
                write_json(cache, ref)
            del model
            state.wait_for_everyone()
        for split, pairs in (("train", self.train_pairs), ("test", self.test_pairs)):
            for p, c, r in zip(pairs, ref[split]["chosen"], ref[split]["rejected"], strict=True):
                p.ref_chosen, p.ref_rejected = c, r
        self._has_reference = True

    @property
    def response_only(self) -> bool:
        """Whether log-probs take the response-only path (a per-scale training setting)."""
        return self.cfg.train.response_logits

    @property
    def ref_logp_chosen_mean(self) -> float:
        """Mean summed reference log-prob (nats) of the held-out chosen responses."""
        self.reference()
        return float(np.mean([p.ref_chosen for p in self.test_pairs]))

    def settings(self) -> list[dict[str, Any]]:
        """The paper's SC-DPO settings (Sec. 5.1.3) beside this scale's."""
        w, hp = self.cfg.loss, self.cfg.train
        ours = {"epochs": hp.epochs, "learning rate": hp.lr, "warmup ratio": hp.warmup_ratio, "β_DPO": w.beta,
                "δ": w.delta, "λ_a": w.lambda_a, "[γ_l, γ_h]": f"[{w.gamma_l}, {w.gamma_h}]", "λ_g,l": w.lambda_gl,
                "λ_g,h": w.lambda_gh, "m": w.m, "λ_c": w.lambda_c}
        return [{"setting": k, "paper": SC_DPO_SETTINGS[k], f"this scale ({self.scale})": ours[k]} for k in SC_DPO_SETTINGS]

    def weights(self, variant: str) -> SCDPOLoss:
        """The loss of a variant: ``sc`` (Eq. 13), ``vanilla`` (Eq. 8 only), or an SC-DPO ablation
        without one term: ``sc-no-anchor`` (Eq. 9), ``sc-no-gap`` (Eq. 10-11), ``sc-no-centre`` (Eq. 12)."""
        w = self.cfg.loss
        off = {"sc": {}, "sc-no-anchor": {"lambda_a": 0.0}, "sc-no-gap": {"lambda_gl": 0.0, "lambda_gh": 0.0},
               "sc-no-centre": {"lambda_c": 0.0}}
        if variant == "vanilla":
            return SCDPOLoss.vanilla(w.beta)
        if variant not in off:
            raise ValueError(f"unknown DPO variant {variant!r}; choose vanilla or one of {sorted(off)}")
        return dataclasses.replace(w, **off[variant])

    def run_dir(self, variant: str, tag: str = "") -> Path:
        return self.work / f"dpo-{variant}{'-' + tag if tag else ''}"

    def train(self, variant: str, retrain: bool = False, tag: str = "", deepspeed: str | None = None,
              out: str | Path | None = None, **train_overrides) -> list[dict[str, float]]:
        """Train one variant from the PICD checkpoint (or reuse it) in this process; returns its log history.
        ``train_overrides`` change the scale's training settings (e.g. epochs, lr, max_grad_norm) for a run kept
        apart under ``tag``; ``out``: the run's folder (default ``run_dir(variant, tag)``). Notebooks and studies
        launch ``gplan train``, which calls this (``train_all``)."""
        hp = replace(self.cfg.train, **train_overrides)

        def build(trainer_dir: str):
            self.reference()

            def model():
                torch.manual_seed(self.seed)
                return load_for_training(self.base, self.tokenizer, self.model_cfg)
            return make_dpo_trainer(model, self.tokenizer, self.train_pairs, self.weights(variant), hp,
                                    trainer_dir, seed=self.seed, deepspeed=deepspeed)

        m = self.model_cfg
        return train_or_reuse(Path(out) if out else self.run_dir(variant, tag), self.run_key(variant, **train_overrides),
                              retrain, build, self.tokenizer, lambda tr: {**self.base_card, "dpo_variant": variant},
                              save_dtype=None if m.kind == "tiny" else getattr(torch, m.dtype))

    def run_key(self, variant: str, **train_overrides) -> str:
        hp = replace(self.cfg.train, **train_overrides)
        written = {**as_written(self.cfg), "train": as_written(hp)} if train_overrides else as_written(self.cfg)
        return config_key({"base": self.base_key, "cfg": written, "variant": variant, "seed": self.seed, **self.data_key})

    def train_all(self, variants: dict[str, str] = DPO_VARIANTS, retrain: bool = False,
                  workers: int | None = None) -> dict[str, list[dict[str, float]]]:
        """Train (or reuse) several variants (table name -> variant), each a launched ``gplan train`` after the
        reference pass (on a CPU side by side, one thread each); log histories by name."""
        todo = {n: v for n, v in variants.items() if retrain or not is_trained(self.run_dir(v), self.run_key(v))}
        if todo:
            run_jobs(dpo_jobs(self.scale, self.seed, todo, retrain, with_reference=not self.reference_cached(),
                              **self._launch), workers, desc="DPO training")
        return {n: self.train(v) for n, v in variants.items()}

    def evaluate(self, directory: str | Path, name: str = "generate") -> tuple[Scores, list[dict]]:
        """Label metrics, validity and Latent-Valid of a saved student (the base or a variant) on the
        held-out synthetic rows, decoded as notebook 02 decodes."""
        return evaluate_student(directory, self.test_rows, self.eval_cfg, self.seed, desc=name)

    def sensitivity(self, directory: str | Path, generate: bool = True) -> dict[str, Any]:
        """Context sensitivity of a saved student on the held-out pairs (see the module docstring);
        ``generate=False`` leaves out the flip rate, the one measure that decodes."""
        c, r = saved_pair_logps(directory, self.test_pairs, self.tokenizer.pad_token_id, self.cfg.eval_batch_size,
                                self.response_only, self.cfg.train.bf16)
        is_base = weights_digest(directory) == self.base_digest
        if not is_base:
            self.reference()
        ref = None if is_base else (
            np.array([p.ref_chosen for p in self.test_pairs]), np.array([p.ref_rejected for p in self.test_pairs]))
        return {**likelihood_sensitivity(c, r, self.test_records, ref),
                **(self.flip_rate(directory) if generate else {})}

    def flip_rate(self, directory: str | Path) -> dict[str, float]:
        """Generate under x and under x' for each held-out pair: the plan under x should be closer
        (NES) to y+ than to y-, and under x' the reverse. ``flip_rate``: both hold."""
        by_pair: dict[str, dict[str, dict]] = {}
        for rec in self.test_records:
            by_pair.setdefault(rec["pair_id"], {})[rec["direction"]] = rec
        pairs = [v for v in by_pair.values() if {"x", "x'"} <= set(v)]
        rows = [GsisrRow(p[d]["row"]) for p in pairs for d in ("x", "x'")]
        outs = StudentPlanner(directory).generate(rows, self.cfg.eval_batch_size, self.cfg.max_new_tokens,
                                                  desc="flip rate")
        matched, flips = [], []
        for i, p in enumerate(pairs):
            plan_x, plan_xp = parse_output(p["x"]["chosen"]).plan, parse_output(p["x'"]["chosen"]).plan
            g_x, g_xp = parse_output(outs[2 * i]["output"]).plan, parse_output(outs[2 * i + 1]["output"]).plan
            a, b = nes(g_x, plan_x) > nes(g_x, plan_xp), nes(g_xp, plan_xp) > nes(g_xp, plan_x)
            matched += [a, b]
            flips.append(a and b)
        return {"flip_rate": float(np.mean(flips)), "context_matched": float(np.mean(matched)), "pairs": len(pairs)}


LOSS_TERMS = ("dpo", "anchor", "gap_low", "gap_high", "center")  # sc_dpo_terms' names


def reward_histories(histories: dict[str, Sequence[dict[str, Any]]]) -> dict[str, dict[str, list[float]]]:
    """Per variant: step, r+, r-, gap and centre from the trainer logs (trl names), and each term of Eq. 13."""
    out = {}
    for name, hist in histories.items():
        logs = [h for h in hist if "rewards/chosen" in h]
        out[name] = {"step": [h["step"] for h in logs], "r+": [h["rewards/chosen"] for h in logs],
                     "r-": [h["rewards/rejected"] for h in logs], "gap": [h["rewards/margins"] for h in logs],
                     "center": [h["rewards/center"] for h in logs],
                     **{f"L_{term}": [h.get(f"loss/{term}", float("nan")) for h in logs] for term in LOSS_TERMS}}
    return out



def _interleave(chosen: list[float], rejected: list[float], state, n: int) -> dict[str, list[float]]:
    """Every rank's share of ``n`` pairs (rank k scored pairs k, k + world, ...) back in pair order."""
    from accelerate.utils import gather_object
    mine = (state.process_index, chosen, rejected)
    shares = gather_object([mine]) if state.num_processes > 1 else [mine]
    out = {"chosen": [0.0] * n, "rejected": [0.0] * n}
    for rank, c, r in shares:
        out["chosen"][rank::state.num_processes], out["rejected"][rank::state.num_processes] = c, r
    return out


def dpo_launch(scale: str, seed: int, variant: str, name: str, *, retrain: bool = False, tag: str = "",
               overrides: dict[str, Any] | None = None, after: tuple[str, ...] = (), base: str | Path | None = None,
               work: str | Path | None = None, data: str | Path | None = None) -> Launch:
    """One variant's training (``variant="reference"``: the reference pass) of ``SCDPOExperiment(scale, seed,
    base=base, work=work)`` as a ``gplan train`` launch (its base need not be trained yet)."""
    method = "dpo-reference" if variant == "reference" else f"dpo-{variant}"
    return Launch(name, scale, train_argv(scale, seed, method, base=base, work=work, tag=tag, overrides=overrides,
                                          data=data, retrain=retrain), after)


def dpo_jobs(scale: str, seed: int, variants: dict[str, str], retrain: bool = False, *, with_reference: bool = True,
             prefix: str = "", after: tuple[str, ...] = (), **where) -> list[Launch]:
    """Launches of ``variants`` (table name -> variant), after ``after`` (e.g. the base's own launch) and after
    the reference pass (which every variant reads); ``where``: ``base`` and ``work`` (``dpo_launch``)."""
    ref = dpo_launch(scale, seed, "reference", f"{prefix}reference log-probs", after=after, **where)
    first = (ref.name,) if with_reference else after
    return [ref] * with_reference + [dpo_launch(scale, seed, v, prefix + name, retrain=retrain, after=first, **where)
                                     for name, v in variants.items()]
