"""Progressive Implicit CoT Distillation (paper Sec. 4.1): curriculum, section-normalised loss, CALR.

- The curriculum reaches the targets: ``CurriculumDataset`` builds each target from the current
  epoch when it is read (the stage is computed from the epoch and handed to the target builder, as
  in coconut), so at 1-based epoch e a sample has min(e - 1, B) blocks folded. The released code
  froze its targets at build time and trained on full text throughout.
- Section-normalised loss (Eq. 5): L = 1/2 (L_cot + L_json), each the mean token loss over its
  section, pooled over the micro-batch as the released code does (full scales: the head and the loss at
  supervised positions only, ``training.trainer.supervised_ce``). Section spans are recorded when
  the sequence is assembled, never found afterwards by searching for the ids of "</THOUGHT>".
- CALR (Eq. 4): eta_struct while the global stage g(t) <= B*, then eta_polish with cosine decay;
  cosine and constant schedules for the ablation (Table 3). The multiplier is a function of the
  step, so resuming restores the stage and the LR position with the scheduler state.
- Modes: ``direct`` (plan only), ``cot`` (full reasoning text), ``picd`` (the curriculum).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback

from ..core.data import GsisrRow
from ..core.intents import Plan, dumps_plan
from ..core.parsing import parse_output
from ..core.prompt import PromptOptions, build_messages
from ..core.scaffold import Reasoning, latent_tokens_for, sample_stage
from ..training.modeling import chat_prompt
from ..training.trainer import WindowedLogs, right_pad, supervised_ce, token_ce, training_arguments, warmup_steps
from .config import PICDTrainConfig

Mode = Literal["direct", "cot", "picd"]
Schedule = Literal["calr", "cosine", "constant"]
PROMPT, COT, JSON = 0, 1, 2  # section ids per token (0: unsupervised)


@dataclass
class EncodedSample:
    """A training sample tokenised once: prompt, wrapper, per-block text/latent ids, JSON (+ EOS)."""

    prompt: list[int]
    open_ids: list[int]
    close_ids: list[int]
    blocks_text: list[list[int]]
    blocks_latent: list[list[int]]
    json: list[int]

    @property
    def n_blocks(self) -> int:
        return len(self.blocks_text)

    def target(self, mode: Mode, stage: int) -> tuple[list[int], list[int]]:
        """(token ids, section ids) of the response at ``stage``."""
        if mode == "direct":
            return list(self.json), [JSON] * len(self.json)
        b = 0 if mode == "cot" else max(0, min(stage, self.n_blocks))
        cot = list(self.open_ids)
        for i in range(self.n_blocks):
            cot += self.blocks_latent[i] if i < b else self.blocks_text[i]
        cot += self.close_ids
        return cot + self.json, [COT] * len(cot) + [JSON] * len(self.json)


def encode_response(tokenizer, thought: str, plan: Plan, prompt: Sequence[int] = ()) -> EncodedSample:
    """The response pieces of one label (reasoning inner text + plan) as PICD tokenises them: the
    wrapper, each block as text and as its latent triplet, and the JSON plan + EOS, each piece
    tokenised on its own, so that every stage's target is a concatenation of the same ids."""
    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    blocks = Reasoning.parse(thought).blocks
    return EncodedSample(
        prompt=list(prompt), open_ids=ids("<THOUGHT>"), close_ids=ids("</THOUGHT>"),
        blocks_text=[ids(f"<{tag}>{text}</{tag}>") for tag, text in blocks],
        blocks_latent=[tokenizer.convert_tokens_to_ids(latent_tokens_for(tag)) for tag, _ in blocks],
        json=ids(dumps_plan(plan)) + [tokenizer.eos_token_id])


def latent_target(tokenizer, label: str) -> list[int]:
    """The fully latent PICD target of a teacher label (stage B: scaffold + JSON + EOS), token for
    token what the curriculum trains at its last stage and what the student generates."""
    parsed = parse_output(label)
    if parsed.thought is None:
        raise ValueError("label has no <THOUGHT> reasoning")
    sample = encode_response(tokenizer, parsed.thought, parsed.plan)
    return sample.target("picd", sample.n_blocks)[0]


def encode(rows: Sequence[GsisrRow], tokenizer, options: PromptOptions, max_len: int) -> list[EncodedSample]:
    """Tokenise rows whose labels carry reasoning + plan (prompt left-truncated to fit ``max_len``)."""
    out = []
    for row in rows:
        if row.thought is None:
            raise ValueError(f"row id={row.id}: label has no <THOUGHT> reasoning (run `gplan rationalize` first)")
        prompt = tokenizer(chat_prompt(tokenizer, build_messages(row, options)), add_special_tokens=False).input_ids
        sample = encode_response(tokenizer, row.thought, row.plan, prompt)
        longest = len(sample.target("cot", 0)[0])
        if longest >= max_len:
            raise ValueError(f"row id={row.id}: response alone is {longest} tokens, max_len is {max_len}")
        sample.prompt = sample.prompt[-(max_len - longest):]
        out.append(sample)
    return out


class CurriculumDataset(torch.utils.data.Dataset):
    """Targets rebuilt from the current epoch on every read. The trainer's callback calls
    ``set_curriculum_epoch`` (not ``set_epoch``: accelerate calls a dataset's ``set_epoch`` with a
    0-based epoch, which would silently put every target one stage behind)."""

    def __init__(self, samples: Sequence[EncodedSample], mode: Mode):
        self.samples, self.mode, self.epoch = list(samples), mode, 1

    def set_curriculum_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def stage(self, i: int) -> int:
        return sample_stage(self.epoch, self.samples[i].n_blocks) if self.mode == "picd" else 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        s = self.samples[i]
        target, sections = s.target(self.mode, self.stage(i))
        return {"input_ids": s.prompt + target, "sections": [PROMPT] * len(s.prompt) + sections}


def collate(pad_id: int):
    def fn(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        ids = [b["input_ids"] for b in batch]
        return {"input_ids": right_pad(ids, pad_id), "attention_mask": right_pad([[1] * len(s) for s in ids], 0),
                "sections": right_pad([b["sections"] for b in batch], PROMPT)}
    return fn


def section_means(ce: torch.Tensor, sections: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 5 from per-token losses ``ce`` (N,) and the section of each token (N,): the mean over CoT tokens
    and the mean over JSON tokens (pooled over the batch), averaged; a section absent from the batch drops
    out. Returns the loss and its parts for logging."""
    parts = {name: ce[sections == sid].mean() for name, sid in (("cot", COT), ("json", JSON)) if (sections == sid).any()}
    if not parts:
        raise ValueError("batch has no supervised tokens")
    loss = torch.stack(list(parts.values())).mean()
    return loss, {f"loss_{k}": float(v.detach()) for k, v in parts.items()}


def section_loss(logits: torch.Tensor, input_ids: torch.Tensor, sections: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 5 from full (B, T, V) logits (the CPU scales): every position's CE, then ``section_means``."""
    ce = token_ce(logits[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten())  # (B*(T-1),)
    return section_means(ce, sections[:, 1:].flatten())  # the section of each predicted token


def lr_multiplier(step: int, total: int, steps_per_epoch: int, schedule: Schedule, warmup: int,
                  b_star: int, polish_ratio: float) -> float:
    """The LR at ``step`` as a fraction of eta_struct (Eq. 4 for ``calr``).

    g(t) = step // steps_per_epoch is the global stage (blocks folded in that epoch, uncapped);
    t* (``calr_switch_step``) is the first step with g(t) > B*. Warmup (linear from 0) comes first in every
    schedule."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    t_star = calr_switch_step(b_star, steps_per_epoch)
    if step < t_star:
        return 1.0
    return polish_ratio * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - t_star) / max(1, total - t_star))))


def calr_switch_step(b_star: int, steps_per_epoch: int) -> int:
    """t* of Eq. 4: the first step of the first epoch whose stage g(t) exceeds B*. Stage g counts the blocks folded
    in an epoch (epoch e folds e - 1), so g(t) reaches B* at the start of epoch B* + 1 and CALR still holds
    eta_struct through that epoch; the LR drops one epoch later."""
    return (b_star + 1) * steps_per_epoch


def json_weight(profile: Sequence[dict[str, float]]) -> list[dict[str, float]]:
    """Per epoch, the share of the loss the JSON plan carries: under a token mean it is the JSON tokens' share of all
    supervised tokens (it grows as blocks fold away); under Eq. 5 it is 1/2 whenever a CoT section exists."""
    return [{"epoch": p["epoch"], "token mean": p["json_tokens"] / (p["json_tokens"] + p["cot_tokens"]),
             "Eq. 5": 0.5 if p["cot_tokens"] > 0 else 1.0} for p in profile]


def b_star_of(samples: Sequence[EncodedSample], quantile: float = 0.9) -> int:
    """B* = the p90 of B over the training set (Sec. 4.1.3)."""
    return int(np.ceil(np.quantile([s.n_blocks for s in samples], quantile)))


def compression_profile(samples: Sequence[EncodedSample], epochs: int, mode: Mode = "picd") -> list[dict[str, float]]:
    """Per epoch: mean blocks folded, share of samples fully latent, mean CoT and JSON target tokens."""
    rows = []
    for e in range(1, epochs + 1):
        stages = [sample_stage(e, s.n_blocks) if mode == "picd" else 0 for s in samples]
        cot = [sum(1 for x in s.target(mode, b)[1] if x == COT) for s, b in zip(samples, stages)]
        rows.append({"epoch": e, "blocks_folded": float(np.mean(stages)),
                     "fully_latent": float(np.mean([b >= s.n_blocks for s, b in zip(samples, stages)])),
                     "cot_tokens": float(np.mean(cot)), "json_tokens": float(np.mean([len(s.json) for s in samples]))})
    return rows


class CurriculumCallback(TrainerCallback):
    """Sets the dataset's 1-based curriculum epoch from the Trainer's state at every epoch start
    (also after a resume): ``state.epoch`` counts completed epochs there."""

    def __init__(self, dataset: CurriculumDataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_curriculum_epoch(math.floor(round(state.epoch or 0.0, 6)) + 1)


class PICDTrainer(WindowedLogs):
    """HF Trainer with the section-normalised loss and the CALR / cosine / constant schedules."""

    def __init__(self, *args, schedule: Schedule = "calr", b_star: int = 9, polish_ratio: float = 0.2,
                 warmup_ratio: float = 0.01, response_logits: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.schedule, self.b_star, self.polish_ratio = schedule, b_star, polish_ratio
        self.response_logits = response_logits  # logits only where the loss needs them (full scales)
        self.warmup_ratio = warmup_ratio
        self.steps_per_epoch: int | None = None  # optimizer steps per epoch, as the Trainer plans them

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        sections, ids, att = inputs.pop("sections"), inputs["input_ids"], inputs["attention_mask"]  # (B, T) each
        if self.response_logits:  # the head only where a CoT or JSON token is predicted (full scales)
            scored = sections != PROMPT
            ce = supervised_ce(model, ids, att, scored, self.accelerator.autocast())  # (N,)
            loss, parts = section_means(ce, sections[:, 1:][scored[:, 1:]])
            outputs = None
        else:
            outputs = model(input_ids=ids, attention_mask=att)  # logits (B, T, V)
            loss, parts = section_loss(outputs.logits, ids, sections)
        self.record(parts)
        return (loss, outputs) if return_outputs else loss

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The schedule over the Trainer's own step count: it plans ``epochs x steps per epoch``
        optimizer steps (per process, after accumulation), so g(t) = t // (that per-epoch count)
        is the epoch a step falls in on one GPU or many."""
        if self.lr_scheduler is None:
            spe = self.steps_per_epoch = max(1, num_training_steps // max(1, math.ceil(self.args.num_train_epochs)))
            warmup = warmup_steps(num_training_steps, self.warmup_ratio)
            schedule, b_star, polish = self.schedule, self.b_star, self.polish_ratio  # no reference to self:
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, lambda t: lr_multiplier(  # the trainer is freed
                t, num_training_steps, spe, schedule, warmup, b_star, polish))
        return self.lr_scheduler

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs:  # g(t): the stage the curriculum dataset built this epoch's targets at
            logs["stage"] = self.train_dataset.epoch - 1
        super().log(logs, *args, **kwargs)


def make_trainer(model, tokenizer, samples: Sequence[EncodedSample], mode: Mode, schedule: Schedule,
                 hp: PICDTrainConfig, out_dir: str, seed: int = 0, deepspeed: str | None = None) -> PICDTrainer:
    """A trainer for one run: the curriculum dataset (its stage set from the Trainer's epoch), the
    section-normalised loss and the ``schedule`` over eta_struct / eta_polish (``hp.b_star`` None: p90 of B).
    ``model``: the model, or a function returning it, called once the TrainingArguments exist (ZeRO-3)."""
    dataset = CurriculumDataset(samples, mode)
    args = training_arguments(hp, out_dir, seed, deepspeed, save_strategy="steps" if hp.save_steps else "no",
                              save_steps=hp.save_steps or 500, save_total_limit=hp.save_total_limit)
    model = model if isinstance(model, torch.nn.Module) else model()
    if hp.gradient_checkpointing:
        model.activation_checkpointing_enable()
    return PICDTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate(tokenizer.pad_token_id),
                       callbacks=[CurriculumCallback(dataset)], schedule=schedule, b_star=hp.b_star or b_star_of(samples),
                       polish_ratio=hp.polish_lr / hp.lr, warmup_ratio=hp.warmup_ratio,
                       response_logits=hp.response_logits)
