"""Spatiotemporal Counterfactual DPO (paper Sec. 4.2, Eq. 6-13).

The loss is a plain function of per-sequence log-probabilities (policy and reference, matched y+
and mismatched y-), so each term can be tested by hand and vanilla DPO is the same function with
the extra terms switched off. Sequences are the student's response only (the fully latent prefix
and the JSON plan); reference log-probs are computed once before training and stored with the
pairs, so no second model sits in memory (for a LoRA policy the reference is the adapter-disabled
base). trl's DPOTrainer computes its loss inline, so a custom preference loss needs this code path;
the HF Trainer still runs the loop. Logs use trl's names plus the anchor, gap and centre terms.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core.data import GsisrRow
from ..core.prompt import PromptOptions, build_messages
from ..picd.trainer import latent_target
from ..training.config import TrainConfig
from ..training.modeling import chat_prompt
from ..training.trainer import WindowedLogs, right_pad, supervised_ce, training_arguments
from .config import SCDPOLoss


def sc_dpo_terms(r_plus: torch.Tensor, r_minus: torch.Tensor, w: SCDPOLoss = SCDPOLoss()
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 8-13 per pair from the reward shifts r+ and r- (any matching shapes): the total and each term."""
    gap, center = r_plus - r_minus, 0.5 * (r_plus + r_minus)
    terms = {
        "dpo": -F.logsigmoid(gap),                           # Eq. 8
        "anchor": F.relu(w.delta - r_plus) ** 2,             # Eq. 9
        "gap_low": F.relu(w.gamma_l - gap) ** 2,             # Eq. 10
        "gap_high": F.relu(gap - w.gamma_h) ** 2,            # Eq. 11
        "center": (center - w.m) ** 2,                       # Eq. 12
    }
    total = (terms["dpo"] + w.lambda_a * terms["anchor"] + w.lambda_gl * terms["gap_low"]   # Eq. 13
             + w.lambda_gh * terms["gap_high"] + w.lambda_c * terms["center"])
    return total, terms


def sc_dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                ref_rejected: torch.Tensor, w: SCDPOLoss = SCDPOLoss()) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over pairs of Eq. 13, and the quantities trl logs plus each term."""
    # every argument: (P,) summed response log-probs, one per pair
    r_plus = w.beta * (policy_chosen - ref_chosen)          # Eq. 6
    r_minus = w.beta * (policy_rejected - ref_rejected)     # Eq. 7
    total, terms = sc_dpo_terms(r_plus, r_minus, w)
    gap, center = r_plus - r_minus, 0.5 * (r_plus + r_minus)
    logs = {"rewards/chosen": r_plus.mean(), "rewards/rejected": r_minus.mean(), "rewards/margins": gap.mean(),
            "rewards/accuracies": (r_plus > r_minus).float().mean(), "rewards/center": center.mean(),
            "logps/chosen": policy_chosen.mean(), "logps/rejected": policy_rejected.mean(),
            **{f"loss/{k}": v.mean() for k, v in terms.items()}}
    return total.mean(), {k: float(v.detach()) for k, v in logs.items()}


def loss_minimum(w: SCDPOLoss, extent: float = 1.0, step: float = 0.0025) -> dict[str, float]:
    """Where Eq. 13 is lowest over a grid of (r+, r-) in [-extent, extent]^2, with its gap and centre; ``at_edge``
    says the minimum lies on the grid's border (vanilla DPO has none: its loss falls as the gap grows)."""
    axis = torch.arange(-extent, extent + step / 2, step, dtype=torch.float64)
    rp, rm = torch.meshgrid(axis, axis, indexing="ij")
    total, _ = sc_dpo_terms(rp, rm, w)
    i, j = divmod(int(total.argmin()), len(axis))
    r_plus, r_minus = float(axis[i]), float(axis[j])
    return {"r+": r_plus, "r-": r_minus, "gap": r_plus - r_minus, "center": (r_plus + r_minus) / 2,
            "loss": float(total[i, j]), "at_edge": i in (0, len(axis) - 1) or j in (0, len(axis) - 1)}


@dataclass
class EncodedPair:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    ref_chosen: float = math.nan
    ref_rejected: float = math.nan


def encode_pairs(records: Sequence[dict[str, Any]], tokenizer, options: PromptOptions) -> list[EncodedPair]:
    """Pair records (from pairs_*.jsonl) as token ids: the prompt, and the chosen and rejected
    responses exactly as the PICD student was trained to write them at its last stage
    (``picd.trainer.latent_target``: each piece tokenised on its own, so ``</THOUGHT>`` and the JSON never
    merge into a token the student never saw)."""
    return [EncodedPair(tokenizer(chat_prompt(tokenizer, build_messages(GsisrRow(r["row"]), options)),
                                  add_special_tokens=False).input_ids,
                        latent_target(tokenizer, r["chosen"]), latent_target(tokenizer, r["rejected"]))
            for r in records]


def _batch(seqs: Sequence[tuple[list[int], list[int]]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """(prompt, response) pairs -> right-padded ids, attention mask and response mask, each (N, T)."""
    return (right_pad([p + r for p, r in seqs], pad_id), right_pad([[1] * (len(p) + len(r)) for p, r in seqs], 0),
            right_pad([[0] * len(p) + [1] * len(r) for p, r in seqs], 0).bool())


def sequence_logps(model, ids: torch.Tensor, att: torch.Tensor, resp: torch.Tensor,
                   response_only: bool = False, autocast: contextlib.AbstractContextManager | None = None) -> torch.Tensor:
    """log pi(y|x): the sum of the response tokens' log-probabilities, per sequence. With ``response_only``
    (full scales) the output head runs only where a response token is predicted, in checkpointed chunks
    (``training.trainer.supervised_ce``; ``autocast``: the context the model's forward computes in)."""
    if not response_only:
        logits = model(input_ids=ids, attention_mask=att).logits[:, :-1].float()  # (B, T-1, V)
        logp = torch.gather(F.log_softmax(logits, -1), 2, ids[:, 1:, None]).squeeze(-1)  # (B, T-1)
        return (logp * resp[:, 1:]).sum(-1)
    scored = resp.bool()  # (B, T): the response tokens
    ce = supervised_ce(model, ids, att, scored, autocast)  # (N,), row-major
    rows = scored[:, 1:].nonzero()[:, 0]  # (N,): the sequence of each scored token
    return torch.zeros(ids.shape[0], dtype=ce.dtype, device=ce.device).index_add(0, rows, -ce)


def mixed_precision(device: torch.device | str, bf16: bool) -> contextlib.AbstractContextManager:
    """The autocast a policy trains under (the Trainer's ``bf16``), for passes outside the Trainer that must
    score exactly as it does: the reference log-probs (rewards are 0 at step 0) and the held-out measures."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)


@torch.no_grad()
def pair_logps(model, pairs: Sequence[EncodedPair], pad_id: int, batch_size: int = 16,
               desc: str = "log-probs", response_only: bool = False, bf16: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """log pi(y+|x) and log pi(y-|x) for every pair (the reference when called before training;
    for a peft model the adapters are disabled, so the reference is the base), under bf16 autocast when
    the policy trains so (``bf16``)."""
    model.eval()
    device = next(model.parameters()).device
    ctx = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    chosen, rejected = [], []
    with ctx, mixed_precision(device, bf16):
        for s in tqdm(range(0, len(pairs), batch_size), desc=desc):
            b = pairs[s:s + batch_size]
            for out, key in ((chosen, "chosen"), (rejected, "rejected")):
                t = [x.to(device) for x in _batch([(p.prompt, getattr(p, key)) for p in b], pad_id)]
                out.extend(sequence_logps(model, *t, response_only=response_only).float().cpu().tolist())
    return np.array(chosen), np.array(rejected)


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, pairs: Sequence[EncodedPair]):
        if any(math.isnan(p.ref_chosen) for p in pairs):
            raise ValueError("reference log-probs missing: call pair_logps on the reference first")
        self.pairs = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> EncodedPair:
        return self.pairs[i]


def collate_pairs(pad_id: int):
    def fn(batch: list[EncodedPair]) -> dict[str, torch.Tensor]:
        ids, att, resp = _batch([(p.prompt, p.chosen) for p in batch] + [(p.prompt, p.rejected) for p in batch], pad_id)
        return {"input_ids": ids, "attention_mask": att, "response_mask": resp,
                "ref_chosen": torch.tensor([p.ref_chosen for p in batch]),
                "ref_rejected": torch.tensor([p.ref_rejected for p in batch])}
    return fn


class SCDPOTrainer(WindowedLogs):
    """HF Trainer with the SC-DPO loss (vanilla DPO with ``SCDPOLoss.vanilla()``); one forward
    over [chosen; rejected] per step."""

    def __init__(self, *args, loss_weights: SCDPOLoss = SCDPOLoss(), response_logits: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_weights, self.response_logits = loss_weights, response_logits

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logps = sequence_logps(model, inputs["input_ids"], inputs["attention_mask"], inputs["response_mask"],
                               self.response_logits, self.accelerator.autocast())  # (2P,): [chosen; rejected]
        chosen, rejected = logps.chunk(2)              # (P,) each
        loss, logs = sc_dpo_loss(chosen, rejected, inputs["ref_chosen"], inputs["ref_rejected"], self.loss_weights)
        self.record(logs)
        return (loss, None) if return_outputs else loss


def make_dpo_trainer(model, tokenizer, pairs: Sequence[EncodedPair], weights: SCDPOLoss, hp: TrainConfig,
                     out_dir: str, seed: int = 0, deepspeed: str | None = None) -> SCDPOTrainer:
    """One epoch (by default) at a constant LR after a linear warmup (paper: 2e-7, warmup 0.03 of the
    steps the Trainer plans, whatever the number of processes); ``hp.grad_accum`` micro-batches,
    ``hp.gradient_checkpointing`` and ``hp.response_logits`` (see ``sequence_logps``) per scale.
    ``model``: the model, or a function returning it, called once the TrainingArguments exist (ZeRO-3)."""
    args = training_arguments(hp, out_dir, seed, deepspeed, lr_scheduler_type="constant_with_warmup",
                              warmup_steps=float(hp.warmup_ratio), save_strategy="no")
    model = model if isinstance(model, torch.nn.Module) else model()
    if hp.gradient_checkpointing:
        model.activation_checkpointing_enable()
    return SCDPOTrainer(model=model, args=args, train_dataset=PairDataset(pairs),
                        data_collator=collate_pairs(tokenizer.pad_token_id), loss_weights=weights,
                        response_logits=hp.response_logits)


def read_pairs(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
