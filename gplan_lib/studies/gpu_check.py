"""`make gpu-check`: what only a GPU can show, in one command and minutes, without the model hub.

For the Qwen3-1.7B and Qwen3-4B shapes (random weights, which cost the same memory and time as trained ones)
and the offline Qwen3 tokenizer, on full-length synthetic samples (the first curriculum stage, whose targets
are the longest), with the full scales' batch, accumulation, precision, checkpointing and response-only loss:

- ``single``, on one GPU (the others hidden before CUDA starts): PICD and SC-DPO optimizer steps (DPO at a
  non-zero LR from the first step, so that the weights move), seconds per step timed from step 2 on (step 1
  pays for allocation and kernel selection), peak memory, the share of weights moved; then batch-1 decoding of
  each method's token count after a real-length prompt;
- ``ddp``, with 2 or more GPUs: one PICD step of the 1.7B shape launched over 2 GPUs (torchrun, NCCL), the
  peak memory of each rank;
- ``zero3``, with 2 or more GPUs: one PICD step of the 4B shape under DeepSpeed ZeRO-3 (configs/ds_zero3.json).

Each part runs in its own process; results/gpu-check/<gpu name>.json is rewritten after each one, so a failure
at 4B keeps the 1.7B figures. Exit 1 when the machine has NVIDIA GPUs that torch cannot use (a driver older
than the pinned CUDA build needs); 0 with a message when it has none. ``--shape tiny`` runs every part at a
CPU size, the two-process parts with gloo: the test suite's emulation of the node.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import TrainerCallback

from ..core.config import replace
from ..core.files import write_json
from ..core.paths import REPO, RESULTS
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
from ..training.launch import cuda_problem, nvidia_driver

#: A CPU-sized Qwen3 with the real vocabulary (``--shape tiny``), for the test suite.
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
            intermediate_size=128, vocab_size=151936, tie_word_embeddings=True)
SHAPES = {**QWEN3_SHAPES, "tiny": TINY}
ZERO3 = str(REPO / "configs" / "ds_zero3.json")


def _rows(n: int, seed: int = 0):
    teacher = ExpertTeacher(temperature=1.0)
    return [simulate_row(seed, i).replace(raw_labels=teacher.demonstrate(simulate_row(seed, i), random.Random(i)).label())
            for i in range(n)]


def _pairs(n: int) -> list[dict]:
    teacher, records, i = ExpertTeacher(), [], 0
    while len(records) < n:
        records += [p.as_record() for p in make_pairs(simulate_row(1, i), random.Random(i), teacher)]
        i += 1
    return records[:n]


class StepTimes(TrainerCallback):
    """Wall time of each optimizer step (all its micro-batches), the device synchronised at both ends."""

    def __init__(self):
        self.times: list[float] = []

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_begin(self, args, state, control, **kwargs):
        self._sync()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        self.times.append(time.perf_counter() - self.start)


def peak_memory_gb() -> dict[str, float] | None:
    """Peak allocated memory of every device this process sees (GB), None on a CPU."""
    if not torch.cuda.is_available():
        return None
    return {f"cuda:{i}": torch.cuda.max_memory_allocated(i) / 2**30 for i in range(torch.cuda.device_count())}


def _timed_train(trainer, measure_moved: bool = True) -> dict[str, Any]:
    model = trainer.model
    before = {n: p.detach().float().cpu().clone() for n, p in model.named_parameters()} if measure_moved else None
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)
    times = StepTimes()
    trainer.add_callback(times)
    trainer.train()
    moved = None
    if before is not None:
        changed = sum(int((p.detach().float().cpu() != before[n]).sum()) for n, p in model.named_parameters())
        moved = changed / sum(p.numel() for p in model.parameters())
    later = times.times[1:] or times.times
    return {"steps": trainer.state.global_step, "seconds_per_step": sum(later) / len(later),
            "timed_steps": f"2..{len(times.times)}" if len(times.times) > 1 else "1", "step_seconds": times.times,
            "peak_memory_gb": peak_memory_gb(), "weights_moved": moved,
            "learning_rates": [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]}


def _model(shape: dict[str, Any], tokenizer):
    """Random weights of ``shape`` (through ``from_config``: partitioned as they are made under ZeRO-3)."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    from ..training.modeling import add_latent_tokens
    torch.manual_seed(0)
    cfg = Qwen3Config(**shape, max_position_embeddings=4096, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    add_latent_tokens(tokenizer, model)
    return model


def picd_steps(shape: dict[str, Any], tokenizer, hp: PICDTrainConfig, out_dir: str, steps: int,
               deepspeed: str | None = None) -> dict[str, Any]:
    """``steps`` PICD optimizer steps (CALR, the first curriculum stage) with ``hp``; the tokens of the
    longest sequence."""
    from ..training.modeling import add_latent_tokens
    add_latent_tokens(tokenizer)
    per_step = hp.batch_size * hp.grad_accum * int(os.environ.get("WORLD_SIZE", "1"))
    samples = encode(_rows(per_step * steps), tokenizer, PromptOptions.named("released"), 4096)
    hp = replace(hp, epochs=1, save_steps=None, logging_steps=1, disable_tqdm=True, b_star=1)
    out = _timed_train(make_trainer(lambda: _model(shape, tokenizer), tokenizer, samples, "picd", "calr", hp, out_dir,
                                    deepspeed=deepspeed), measure_moved=deepspeed is None)
    return {**out, "tokens_per_sequence": max(len(s.prompt) + len(s.target("cot", 0)[0]) for s in samples)}


def check_shape(shape: dict[str, Any], tokenizer, picd_hp: PICDTrainConfig, dpo_hp: TrainConfig, out_dir: str,
                device: str, steps: int = 4, prompt_tokens: int = REAL_PROMPT_TOKENS,
                new_tokens: dict[str, int] = NEW_TOKENS) -> dict[str, Any]:
    """The ``single`` part for one shape: PICD and SC-DPO steps (fp32 master weights, the scales' settings)
    and decoding times on ``device``."""
    out: dict[str, Any] = {"picd": picd_steps(shape, tokenizer, picd_hp, f"{out_dir}/picd", steps)}
    per_step = dpo_hp.batch_size * dpo_hp.grad_accum
    pairs = encode_pairs(_pairs(per_step * max(3, steps)), tokenizer, PromptOptions.named("released"))
    model = _model(shape, tokenizer).to(device)
    ref_c, ref_r = pair_logps(model, pairs, tokenizer.pad_token_id, dpo_hp.batch_size, desc="reference",
                              response_only=dpo_hp.response_logits, bf16=dpo_hp.bf16)
    for p, c, r in zip(pairs, ref_c, ref_r):
        p.ref_chosen, p.ref_rejected = float(c), float(r)
    hp = replace(dpo_hp, epochs=1, logging_steps=1, disable_tqdm=True, warmup_ratio=0.0)  # a non-zero LR from step 1
    out["sc_dpo"] = _timed_train(make_dpo_trainer(model, tokenizer, pairs, SCDPOLoss(), hp, f"{out_dir}/dpo"))
    out["sc_dpo"]["tokens_per_sequence"] = max(len(p.prompt) + max(len(p.chosen), len(p.rejected)) for p in pairs)
    del model
    decoded = time_decoding(shape, prompt_tokens, new_tokens, device=device,
                            dtype=torch.bfloat16 if device.startswith("cuda") else torch.float32, repeats=2)
    out["decoding"] = {m: {**v, "tokens_per_s": v["new_tokens"] / v["mean_s"]} for m, v in decoded.items()}
    out["decoding"]["prompt_tokens"] = prompt_tokens
    return out


def _settings(tiny: bool) -> tuple[PICDTrainConfig, TrainConfig, dict[str, Any]]:
    """The full scales' training settings (CPU-sized batches and bf16 off with ``tiny``) and decoding sizes."""
    picd, dpo = PICDConfig.from_scale("full-4b").train, SCDPOConfig.from_scale("full-4b").train
    if not tiny:
        return picd, dpo, {}
    return (replace(picd, batch_size=2), replace(dpo, batch_size=1, grad_accum=2, lr=1e-3),
            {"prompt_tokens": 64, "new_tokens": {"Direct-SFT": 5, "PICD": 8}})


def run_part(part: str, size: str, steps: int, out: Path) -> None:
    """One part in this process (``single``), or in this rank of a launched group (``ddp``, ``zero3``)."""
    from ..training.parallel import close_process_group, process_state
    from ..training.qwen3_tokenizer import qwen3_tokenizer
    picd, dpo, small = _settings(size == "tiny")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        if part == "single":
            result = check_shape(SHAPES[size], qwen3_tokenizer(), picd, dpo, tmp, device, steps, **small)
        else:
            result = picd_steps(SHAPES[size], qwen3_tokenizer(), picd, tmp, 1, ZERO3 if part == "zero3" else None)
            from accelerate.utils import gather_object
            state = process_state()
            result = {"processes": state.num_processes, "rank_0": result,
                      "peak_memory_gb_by_rank": gather_object([result["peak_memory_gb"]])}
    if process_state().is_main_process:
        write_json(out, result, indent=1)
    close_process_group()


def _launch_part(part: str, size: str, steps: int, visible: list[str] | None, processes: int) -> dict[str, Any]:
    """Run one part in a new process (group) that sees only ``visible`` GPUs; its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "part.json"
        args = ["-m", "gplan_lib.studies.gpu_check", "--part", part, "--shape", size, "--steps", str(steps), "--to", str(out)]
        cmd = [sys.executable, *(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
                                 if processes > 1 else []), *args]
        env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ",".join(visible)} if visible is not None else
                                {"OMP_NUM_THREADS": "1"})}
        done = subprocess.run(cmd, env=env)
        if done.returncode != 0:
            return {"error": f"exit {done.returncode}: {' '.join(cmd[1:])}"}
        return json.loads(out.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(QWEN3_SHAPES), choices=list(QWEN3_SHAPES))
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per training (timed from step 2 on)")
    ap.add_argument("--shape", choices=list(SHAPES), help="one shape; 'tiny': every part at a CPU size")
    ap.add_argument("--part", choices=("single", "ddp", "zero3"), help=argparse.SUPPRESS)  # a launched part
    ap.add_argument("--to", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS / "gpu-check", help="folder of the report")
    args = ap.parse_args(argv)
    if args.part:
        run_part(args.part, args.shape, args.steps, args.to)
        return 0
    tiny = args.shape == "tiny"
    if not tiny and not torch.cuda.is_available():
        if nvidia_driver():
            print(f"gpu-check: this machine has NVIDIA GPUs that torch cannot use: {cuda_problem()}", file=sys.stderr)
            return 1
        print("gpu-check: no NVIDIA GPU here; nothing to check (`--shape tiny` runs every part at a CPU size).")
        return 0
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = (os.environ.get("CUDA_VISIBLE_DEVICES") or ",".join(map(str, range(gpus)))).split(",") if gpus else None
    name = torch.cuda.get_device_name(0) if gpus else "cpu-tiny"
    report: dict[str, Any] = {"gpu": name, "gpus": gpus, "torch": torch.__version__, "steps": args.steps, "parts": {}}
    path = args.out / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = [args.shape] if args.shape else args.sizes
    plan = [("single", s, visible[:1] if visible else None, 1) for s in sizes]
    if gpus >= 2 or tiny:  # two GPUs, or two gloo processes at the tiny shape
        plan += [("ddp", "tiny" if tiny else "1.7B", visible[:2] if visible else None, 2),
                 ("zero3", "tiny" if tiny else "4B", visible[:2] if visible else None, 2)]
    for part, size, devices, processes in plan:
        print(f"gpu-check: {part}, Qwen3-{size} shape, {processes} process(es) on {name} ...", flush=True)
        report["parts"][f"{part} {size}"] = _launch_part(part, size, args.steps, devices, processes)
        write_json(path, report, indent=1)  # after each part: a later failure keeps the earlier ones
        print(json.dumps(report["parts"][f"{part} {size}"], indent=1), flush=True)
    print(f"gpu-check: wrote {path}")
    return 1 if any("error" in v for v in report["parts"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
