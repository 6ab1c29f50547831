"""Inference for trained students: batched greedy decoding with KV cache, left padding, stop at
<|im_end|> (as the released evaluation decodes), with per-request latency and token counts."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..core.data import GsisrRow
from ..core.metrics import Scores, aggregate, score_sample
from ..core.prompt import PromptOptions, build_messages
from .config import EvalConfig
from .modeling import MODEL_CARD, chat_prompt, default_device, load


def model_card(mode: str, options: PromptOptions, **extra) -> dict:
    """What a saved student needs besides its weights: its mode and prompt options."""
    return {"mode": mode, "prompt_options": asdict(options), **extra}


class StudentPlanner:
    """A saved student (weights, tokenizer and gplan_config.json in one directory)."""

    def __init__(self, directory: str | Path, device: str | None = None, batch_size: int = 16,
                 max_new_tokens: int = 512):
        """``batch_size`` and ``max_new_tokens``: what ``predict`` decodes with."""
        card = json.loads(Path(directory, MODEL_CARD).read_text(encoding="utf-8"))
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.mode, self.options = card["mode"], PromptOptions(**card["prompt_options"])
        self.device = device or default_device()
        # bf16 on a GPU (tensor cores, as the real-shape timing decodes), fp32 on a CPU (the committed numbers)
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.model, self.tokenizer = load(directory, dtype, qlora=card.get("qlora", False))
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"

    def predict(self, rows: Sequence[GsisrRow], desc: str = "generate") -> list[dict]:
        """PRED.jsonl records (``core.planner.Planner``): ``generate`` at the planner's batch size and length."""
        return self.generate(rows, self.batch_size, self.max_new_tokens, desc=desc)

    @torch.inference_mode()
    def generate(self, rows: Sequence[GsisrRow], batch_size: int = 16, max_new_tokens: int = 512,
                 desc: str = "generate", progress: bool = True) -> list[dict]:
        """PRED.jsonl records: id, output (special tokens dropped, latent tokens kept), latency_ms
        (wall time of the request's batch) and new_tokens (generated, up to and with EOS)."""
        tok, records = self.tokenizer, []
        for start in tqdm(range(0, len(rows), batch_size), desc=desc, disable=not progress):
            batch = rows[start:start + batch_size]
            enc = tok([chat_prompt(tok, build_messages(r, self.options)) for r in batch], return_tensors="pt",
                      padding=True, add_special_tokens=False).to(self.device)
            t = time.perf_counter()
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            ms = (time.perf_counter() - t) * 1000
            new = out[:, enc["input_ids"].shape[1]:]
            for row, seq in zip(batch, new):
                ids = seq.tolist()
                n = ids.index(tok.eos_token_id) + 1 if tok.eos_token_id in ids else len(ids)
                records.append({"id": row.id, "output": tok.decode(ids[:n], skip_special_tokens=True),
                                "latency_ms": ms, "new_tokens": n})
        return records


def evaluate_student(directory: str | Path, rows: Sequence[GsisrRow], eval_cfg: EvalConfig, seed: int = 0,
                     desc: str = "generate") -> tuple[Scores, list[dict]]:
    """Greedy outputs of a saved student on labelled rows, scored: Acc@1, NDCG@3, NES, validity,
    Latent-Valid and generated tokens per sample (with bootstrap intervals)."""
    records = StudentPlanner(directory).generate(rows, eval_cfg.batch_size, eval_cfg.max_new_tokens, desc=desc)
    per = [{**score_sample(rec["output"], row.plan, latent=True), "new_tokens": float(rec["new_tokens"])}
           for rec, row in zip(records, rows)]
    return aggregate(per, seed=seed), records
