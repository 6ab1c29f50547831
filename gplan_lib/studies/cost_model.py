"""Hours and memory of `make run` at a GPU scale, from a stated model (issue 11: no GPU was lent here).

Training time is FLOPs over sustained throughput: 2 FLOPs per parameter per token forward, 4 backward, 2 more
forward for gradient checkpointing's recompute (Kaplan et al. 2020's 6N, plus 2N), the output head only on
response tokens (`response_logits`), causal attention at the mean context, padding waste on top; sustained
throughput is an assumed share (MFU) of the GPU's dense bf16 peak. Decoding is per step either launch-bound
(a fixed time per layer, HF `generate` at small batch) or bandwidth-bound (weights and KV cache read once per
step), whichever is slower, plus the prompt's prefill. Memory: fp32 master weights, fp32 gradients and AdamW's
two fp32 moments (16 bytes per parameter, `modeling.py`), the checkpointed layer inputs, one layer's working
set and a 4,096-row fp32 logits chunk. Token counts are the full scale's, measured with the offline Qwen3
tokenizer (`evaluation/latency.py`, `studies/gpu_check.py`). Each assumption is a named field of :class:`GPU` or
:data:`TOKENS`; `make gpu-check` measures seconds per step and tokens/s on a real GPU to replace them.

    python -m gplan_lib.studies.cost_model --scale gpu80-1.7b      # a markdown table per notebook
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..evaluation.config import EvaluationConfig
from ..evaluation.latency import NEW_TOKENS, QWEN3_SHAPES
from ..picd.config import PICDConfig
from ..sc_dpo.config import SCDPOConfig
from ..synthesis.config import SynthConfig
from ..training.config import ModelConfig
from ..training.launch import launch_config, static_bytes_per_parameter
from ..training.trainer import CE_CHUNK_ELEMENTS

#: Mean tokens per full-scale sample (Qwen3 tokenizer): synthetic prompt in the released chat layout, and
#: the three response kinds (teacher reasoning 176 + plan 73; latent prefix 28 + plan 73).
TOKENS = {"prompt": 1253, "plan": NEW_TOKENS["Direct-SFT"], "cot": NEW_TOKENS["CoT-SFT"], "latent": NEW_TOKENS["PICD"]}
B_STAR = 7              # p90 of B on the synthetic data at every scale (README, "Full scale on GPUs")
NODE_GPUS = 8           # processes a scale with ``launch.gpus: all`` is costed at (one 8-GPU node)


@dataclass(frozen=True)
class GPU:
    """One GPU and the assumptions the estimate rests on."""

    name: str
    memory_gb: float
    peak_tflops: float          # dense bf16 tensor-core peak
    bandwidth_tbs: float        # HBM bandwidth
    mfu_train: float = 0.35     # sustained share of peak, HF Trainer, bf16 autocast, checkpointing, no packing
    mfu_prefill: float = 0.5
    bw_eff: float = 0.6         # share of bandwidth a decoding step reaches
    ms_per_layer_step: float = 0.8   # launch-bound decoding: HF generate, eager Python loop, per layer and step
    padding: float = 1.10       # right-padded batches: p90 / mean prompt length is about 1.08


GPUS = {"h100-80gb": GPU("H100 SXM 80GB", 80, 989, 3.35), "a100-80gb": GPU("A100 SXM 80GB", 80, 312, 2.04)}


def n_params(shape: Mapping[str, Any]) -> dict[str, float]:
    """Parameters of a Qwen3 shape: ``body`` (all but the tied embedding) and ``head`` (vocab x hidden)."""
    h, L, f = shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"]
    q, kv = shape["num_attention_heads"] * shape["head_dim"], shape["num_key_value_heads"] * shape["head_dim"]
    layer = h * (q + 2 * kv) + q * h + 3 * h * f + 2 * h + 2 * shape["head_dim"]   # attn, MLP, 2 norms, q/k norms
    head = shape["vocab_size"] * h
    return {"body": L * layer + h, "head": head, "total": L * layer + h + head}


def train_flops(shape: Mapping[str, Any], prompt: float, response: float, checkpointing: bool = True) -> float:
    """FLOPs of one training sample (forward, backward, recompute) with the head on response tokens only."""
    p, per = n_params(shape), 8 if checkpointing else 6
    seq = prompt + response
    attn = 2 * 2 * shape["num_hidden_layers"] * (seq / 2) * shape["num_attention_heads"] * shape["head_dim"]
    return per / 2 * (seq * (2 * p["body"] + attn) + response * 2 * p["head"])


def picd_response(run: str, epoch: int) -> float:
    """Mean response tokens of a run at an epoch: PICD folds one reasoning block per epoch (Sec. 4.2)."""
    if run == "direct":
        return TOKENS["plan"]
    if run == "cot":
        return TOKENS["cot"]
    share = min(epoch, B_STAR) / B_STAR
    return (1 - share) * TOKENS["cot"] + share * TOKENS["latent"]


def decode_seconds(shape: Mapping[str, Any], gpu: GPU, rows: int, batch: int, new_tokens: float,
                   prompt: float = TOKENS["prompt"], longest: float = 1.15) -> float:
    """Seconds to decode ``rows`` requests in batches (greedy, KV cache); a batch runs until its longest
    output (``longest`` x the mean)."""
    p = n_params(shape)
    kv_bytes = 2 * shape["num_hidden_layers"] * shape["num_key_value_heads"] * shape["head_dim"] * 2
    steps = new_tokens * longest
    read = 2 * p["total"] + batch * (prompt + steps / 2) * kv_bytes
    step = max(gpu.ms_per_layer_step / 1e3 * shape["num_hidden_layers"], read / (gpu.bandwidth_tbs * 1e12 * gpu.bw_eff))
    prefill = 2 * p["total"] * prompt * batch / (gpu.peak_tflops * 1e12 * gpu.mfu_prefill)
    return -(-rows // batch) * (steps * step + prefill)


def forward_seconds(shape: Mapping[str, Any], gpu: GPU, sequences: float, tokens: float) -> float:
    """Seconds of forward passes only (reference log-probs, sensitivity)."""
    return sequences * train_flops(shape, tokens, 0, False) / 3 / (gpu.peak_tflops * 1e12 * gpu.mfu_prefill)


def train_memory_gb(shape: Mapping[str, Any], batch: int, seq: float, processes: int = 1,
                    deepspeed: str | None = None) -> float:
    """Peak GB per GPU of full fine-tuning: the static bytes per parameter of the strategy, the checkpointed
    layer inputs (fp32), one layer's working set (attention, MLP, norms in bf16), one chunk of the response-only
    loss, and under ZeRO-3 the bf16 weights it gathers at a time (a layer, and the output head for the loss)."""
    p, h, L = n_params(shape), shape["hidden_size"], shape["num_hidden_layers"]
    tokens = batch * seq
    layer_work = tokens * (6 * h + 4 * shape["intermediate_size"]) * 2 * 2
    loss_chunk = CE_CHUNK_ELEMENTS * (2 + 4 + 4 + 4)
    gathered = 2 * (p["body"] / L + p["head"]) if deepspeed else 0
    return (static_bytes_per_parameter(processes, deepspeed) * p["total"] + L * tokens * h * 4 + layer_work
            + loss_chunk + gathered) / 1e9


def launch_of(scale: str) -> tuple[int, str | None]:
    """(processes, DeepSpeed config) a scale launches its trainings with on a GPU node (``all``: NODE_GPUS)."""
    cfg = launch_config(scale)
    return (NODE_GPUS if cfg.gpus == "all" else cfg.gpus), cfg.deepspeed


def strategy_need_gb(scale: str, processes: int, deepspeed: str | None) -> tuple[float, float]:
    """(total parameters, peak GB per GPU) of full fine-tuning at ``scale`` with that strategy: the larger of
    PICD's (CoT-SFT's longest sequences) and SC-DPO's batch."""
    pc, dc = PICDConfig.from_scale(scale), SCDPOConfig.from_scale(scale)
    shape = shape_of(pc.model)
    need = max(train_memory_gb(shape, pc.train.batch_size, TOKENS["prompt"] + TOKENS["cot"], processes, deepspeed),
               train_memory_gb(shape, 2 * dc.train.batch_size, TOKENS["prompt"] + TOKENS["latent"], processes, deepspeed))
    return n_params(shape)["total"], need


def decode_memory_gb(shape: Mapping[str, Any], batch: int, seq: float) -> float:
    """Peak GB of bf16 decoding: weights, KV cache and the last position's fp32 logits."""
    kv_bytes = 2 * shape["num_hidden_layers"] * shape["num_key_value_heads"] * shape["head_dim"] * 2
    return (2 * n_params(shape)["total"] + batch * seq * kv_bytes + batch * shape["vocab_size"] * 4) / 1e9


def shape_of(model: ModelConfig) -> dict[str, Any]:
    """The Qwen3 shape a scale fine-tunes (``Qwen/Qwen3-1.7B`` -> 1.7B)."""
    size = (model.name or "").rsplit("-", 1)[-1]
    if size not in QWEN3_SHAPES:
        raise ValueError(f"picd.model.name {model.name!r}: no Qwen3 shape for {size!r}; known: {sorted(QWEN3_SHAPES)}")
    return QWEN3_SHAPES[size]


def check_strategy(scale: str, processes: int, deepspeed: str | None, gpu_gb: float) -> str | None:
    """``training.launch.strategy_problem`` for a scale's pretrained backbone (None where the shape is unknown:
    a local checkpoint whose name is not Qwen3-<size>)."""
    from ..training.launch import strategy_problem
    model = PICDConfig.from_scale(scale).model
    try:
        n, need = strategy_need_gb(scale, processes, deepspeed)
    except ValueError:
        return None
    return strategy_problem(model, n, need, gpu_gb, processes, deepspeed)


def estimate(scale: str, gpu: GPU) -> dict[str, dict[str, float]]:
    """GPU-hours and peak GB per GPU per notebook of `make run SCALE=scale` with ``gpu``s, the trainings launched
    as the scale says (``launch_of``); GPU-hours of training divide over its processes."""
    pc, dc, ev = PICDConfig.from_scale(scale), SCDPOConfig.from_scale(scale), EvaluationConfig.from_scale(scale)
    shape, tp, tr = shape_of(pc.model), pc.train, TOKENS["prompt"]
    sustained = gpu.peak_tflops * 1e12 * gpu.mfu_train / gpu.padding
    runs = ("direct", "cot", "picd", "picd", "picd")   # Direct-SFT, CoT-SFT, PICD cosine / constant / CALR
    s02 = sum(pc.n_train * train_flops(shape, tr, picd_response(r, e), tp.gradient_checkpointing) / sustained
              for r in runs for e in range(tp.epochs))
    gen = lambda rows, batch, kind: decode_seconds(shape, gpu, rows, batch, TOKENS[kind])
    n_eval, eb = pc.n_eval, pc.eval.batch_size
    evals = {"plan": 1, "cot": 1, "latent": 3}
    s02 += sum(k * gen(n_eval, eb, kind) for kind, k in evals.items())
    s02 += sum(gen(pc.eval.latency_requests, 1, kind) for kind in ("plan", "cot", "latent"))
    seq = tr + TOKENS["latent"]
    n_pairs, n_test_pairs, db = dc.n_pairs, dc.n_test_pairs, dc.eval_batch_size
    s03 = forward_seconds(shape, gpu, 2 * (n_pairs + n_test_pairs), seq)                      # reference log-probs
    s03 += 2 * 2 * n_pairs * dc.train.epochs * train_flops(shape, tr, TOKENS["latent"], dc.train.gradient_checkpointing) / sustained
    s03 += 3 * (forward_seconds(shape, gpu, 2 * n_test_pairs, seq) + gen(n_test_pairs, db, "latent"))  # DD, flips
    s03 += 2 * gen(n_eval, db, "latent")                                                      # two DPO students
    released = ev.released_rows or 1000
    constrained = lambda rows: rows * 13 * gpu.ms_per_layer_step / 1e3 * shape["num_hidden_layers"] * 1.3
    s04 = sum(k * (gen(n_eval, eb, kind) + gen(released, eb, kind)) for kind, k in {**evals, "latent": 2}.items())
    s04 += 2 * (constrained(n_eval) + constrained(released) + constrained(pc.eval.latency_requests))
    s04 += sum(gen(pc.eval.latency_requests, 1, kind) for kind in ("plan", "cot", "latent"))
    s04 += 3 * min(ev.load.max_seconds, ev.load.requests / ev.load.qps + 60)
    s04 += 600                                                                    # ten small baselines, judge
    _, train_gb = strategy_need_gb(scale, *launch_of(scale))
    dpo_gb = train_gb
    dec_gb = decode_memory_gb(shape, eb, tr + pc.eval.max_new_tokens // 4)
    synth_h = SynthConfig.from_scale(scale).n / 100_000 * 45 / 3600               # `make bench`: 40-42 s per 100K
    return {"00 data": {"hours": 0.01, "peak_gb": 0.0},
            "01 synthesis": {"hours": synth_h, "peak_gb": 0.0},
            "02 PICD": {"hours": s02 / 3600, "peak_gb": max(train_gb, dec_gb)},
            "03 SC-DPO": {"hours": s03 / 3600, "peak_gb": max(dpo_gb, dec_gb)},
            "04 evaluation": {"hours": s04 / 3600, "peak_gb": dec_gb}}


def markdown(scale: str, gpus: Sequence[str] = tuple(GPUS)) -> str:
    """One table: hours and peak memory per notebook on each GPU."""
    est = {g: estimate(scale, GPUS[g]) for g in gpus}
    head = "| notebook | " + " | ".join(f"{GPUS[g].name}: hours" for g in gpus) + " | peak GB |"
    lines = [head, "|" + "---|" * (len(gpus) + 2)]
    first = est[gpus[0]]
    for nb in first:
        lines.append(f"| {nb} | " + " | ".join(f"{est[g][nb]['hours']:.2f}" for g in gpus)
                     + f" | {first[nb]['peak_gb']:.0f} |")
    lines.append("| **total** | " + " | ".join(f"**{sum(v['hours'] for v in est[g].values()):.1f}**" for g in gpus)
                 + " | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="gpu80-1.7b")
    args = ap.parse_args(argv)
    print(markdown(args.scale))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
