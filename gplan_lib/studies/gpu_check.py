"""`make gpu-check`: what only a GPU can show, in one command and a few minutes, without the model hub.

For the Qwen3-1.7B and Qwen3-4B shapes (random weights, which cost the same memory and time as trained
ones) and the offline Qwen3 tokenizer: two PICD optimizer steps and two SC-DPO optimizer steps with the
full scales' batch, accumulation, precision, checkpointing and response-only logits, on full-length
synthetic samples (the first curriculum stage, whose targets are the longest); then batch-1 decoding of
each method's token count after a real-length prompt. Writes peak memory, seconds per step, the share of
weights the steps moved, and decoding tokens/s to results/gpu-check/<gpu name>.json. Without a GPU it
says so and exits 0. The same code runs at a tiny shape on the CPU in the test suite.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import time
from typing import Any, Sequence

import torch

from ..core.config import replace
from ..core.paths import RESULTS
from ..core.prompt import PromptOptions
from ..evaluation.latency import NEW_TOKENS, QWEN3_SHAPES, REAL_PROMPT_TOKENS, time_decoding
from ..picd.config import PICDConfig, PICDTrainConfig
from ..picd.trainer import encode, make_trainer
from ..sc_dpo.config import SCDPOConfig
from ..sc_dpo.trainer import SCDPOLoss, encode_pairs, make_dpo_trainer, pair_logps
from ..synthesis.counterfactual import make_pairs
from ..synthesis.teacher import ExpertTeacher
from ..synthesis.world import simulate_row
from ..training.config import TrainConfig


def _rows(n: int, seed: int = 0):
    teacher = ExpertTeacher(temperature=1.0)
    return [simulate_row(seed, i).replace(raw_labels=teacher.demonstrate(simulate_row(seed, i), random.Random(i)).label())
            for i in range(n)]


def _moved(model, before: dict[str, torch.Tensor]) -> float:
    changed = sum(int((p.detach().float().cpu() != before[n]).sum()) for n, p in model.named_parameters())
    return changed / sum(p.numel() for p in model.parameters())


def _timed_train(trainer, device: str) -> dict[str, float]:
    model = trainer.model
    before = {n: p.detach().float().cpu().clone() for n, p in model.named_parameters()}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t = time.perf_counter()
    trainer.train()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    steps = trainer.state.global_step
    return {"steps": steps, "seconds_per_step": (time.perf_counter() - t) / max(1, steps),
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
            "weights_moved": _moved(model, before)}


def check_shape(shape: dict[str, Any], tokenizer, picd_hp: PICDTrainConfig, dpo_hp: TrainConfig, out_dir: str,
                device: str, steps: int = 2, prompt_tokens: int = REAL_PROMPT_TOKENS,
                new_tokens: dict[str, int] = NEW_TOKENS) -> dict[str, Any]:
    """PICD and SC-DPO steps and decoding times for one model shape (fp32 master weights on ``device``)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from ..training.modeling import add_latent_tokens
    add_latent_tokens(tokenizer)
    cfg = Qwen3Config(**shape, max_position_embeddings=4096, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    opts = PromptOptions.named("released")
    out: dict[str, Any] = {}
    per_step = picd_hp.batch_size * picd_hp.grad_accum
    samples = encode(_rows(per_step * steps), tokenizer, opts, 4096)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(cfg).to(device)
    add_latent_tokens(tokenizer, model)
    hp = replace(picd_hp, epochs=1, save_steps=None, logging_steps=1, disable_tqdm=True, b_star=1)
    out["picd"] = _timed_train(make_trainer(model, tokenizer, samples, "picd", "calr", hp, f"{out_dir}/picd"), device)
    out["picd"]["tokens_per_sequence"] = max(len(s.prompt) + len(s.target("cot", 0)[0]) for s in samples)
    del model
    teacher, records, i = ExpertTeacher(), [], 0
    per_step = dpo_hp.batch_size * dpo_hp.grad_accum
    while len(records) < per_step * steps:
        records += [p.as_record() for p in make_pairs(simulate_row(1, i), random.Random(i), teacher)]
        i += 1
    pairs = encode_pairs(records[: per_step * steps], tokenizer, opts)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(cfg).to(device)
    add_latent_tokens(tokenizer, model)
    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=dpo_hp.bf16):
        ref_c, ref_r = pair_logps(model, pairs, tokenizer.pad_token_id, dpo_hp.batch_size, desc="reference",
                                  response_only=dpo_hp.response_logits)
    for p, c, r in zip(pairs, ref_c, ref_r):
        p.ref_chosen, p.ref_rejected = float(c), float(r)
    hp = replace(dpo_hp, epochs=1, logging_steps=1, disable_tqdm=True)
    out["sc_dpo"] = _timed_train(make_dpo_trainer(model, tokenizer, pairs, SCDPOLoss(), hp, f"{out_dir}/dpo"), device)
    out["sc_dpo"]["tokens_per_sequence"] = max(len(p.prompt) + max(len(p.chosen), len(p.rejected)) for p in pairs)
    del model
    decoded = time_decoding(shape, prompt_tokens, new_tokens, device=device,
                            dtype=torch.bfloat16 if device.startswith("cuda") else torch.float32, repeats=2)
    out["decoding"] = {m: {**v, "tokens_per_s": v["new_tokens"] / v["mean_s"]} for m, v in decoded.items()}
    out["decoding"]["prompt_tokens"] = prompt_tokens
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(QWEN3_SHAPES), choices=list(QWEN3_SHAPES))
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; nothing to check (the same code runs at a tiny shape on the CPU in "
              "the test suite).")
        return 0
    import tempfile

    from ..training.qwen3_tokenizer import qwen3_tokenizer
    gpu = torch.cuda.get_device_name(0)
    picd, dpo = PICDConfig.from_scale("full-4b"), SCDPOConfig.from_scale("full-4b")
    report: dict[str, Any] = {"gpu": gpu, "torch": torch.__version__, "sizes": {}}
    for size in args.sizes:
        print(f"gpu-check: Qwen3-{size} shape on {gpu} ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            report["sizes"][size] = check_shape(QWEN3_SHAPES[size], qwen3_tokenizer(), picd.train, dpo.train, tmp, "cuda",
                                                args.steps)
        torch.cuda.empty_cache()
        print(json.dumps(report["sizes"][size], indent=1), flush=True)
    path = RESULTS / "gpu-check" / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', gpu)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(f"gpu-check: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
