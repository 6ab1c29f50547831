"""Model and tokenizer factory (paper Sec. 5.1.3: Qwen3 backbones).

Default (CPU): a byte-level BPE tokenizer trained locally on the synthetic corpus, with Qwen's
ChatML special tokens and chat template (or Qwen3's own tokenizer, built offline: the ``ci-qwen3``
scale), and a tiny ``Qwen3ForCausalLM`` built from a config; both saved and reloaded with
``from_pretrained`` from a local directory, the code path that loads Qwen3-1.7B/4B by name or path at
full scale. Either way the 33 latent tokens are added as ordinary (non-special) tokens, as the released
code does, and the embeddings are resized. Optional LoRA trains the new token rows too (peft
``trainable_token_indices``); optional 4-bit QLoRA. A LoRA / QLoRA student is saved as its adapter over
the initial weights (merging into a 4-bit base would re-quantise it and lose every delta below one NF4
step); a full fine-tune in the scale's dtype (bf16 for a Qwen3 checkpoint, fp32 for the tiny models).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from safetensors import SafetensorError
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from ..core.files import sha256_file
from ..core.scaffold import LATENT_TOKENS
from .config import ModelConfig

SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{%- for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{%- endif %}")
EMPTY_THINK_RE = re.compile(r"<think>\s*</think>\s*")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4000) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on ``texts`` with the ChatML special tokens and template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHATML_TEMPLATE
    return fast


def add_latent_tokens(tokenizer, model: torch.nn.Module | None = None) -> list[int]:
    """Add the 33 latent tokens (ordinary tokens) and give the model rows for them; returns their ids.

    The rows are set explicitly to the mean of the rows the tokenizer already used (input and, when
    untied, output embeddings): a checkpoint whose matrix is padded past its vocabulary (Qwen3: 151,936
    rows for 151,669 tokens) needs no resize, and its spare rows hold values nobody chose."""
    before = len(tokenizer)
    new = [t for t in LATENT_TOKENS if t not in tokenizer.get_vocab()]
    tokenizer.add_tokens(new)
    ids = tokenizer.convert_tokens_to_ids(list(LATENT_TOKENS))
    if model is not None and new:
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        rows = tokenizer.convert_tokens_to_ids(new)
        with torch.no_grad():
            for emb in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}.values():
                emb.weight[rows] = emb.weight[:before].float().mean(0).to(emb.weight.dtype)  # (d,) into each new row
    return ids


def default_device() -> str:
    """The one device rule: CUDA when present, else the CPU (students, reference passes, scoring)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def chat_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    """The generation prompt as the released code builds it: thinking disabled, the empty
    <think> block Qwen3 appends removed, ending at ``<|im_start|>assistant\\n``."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    return EMPTY_THINK_RE.sub("", text)


def tiny_qwen3(tokenizer, arch: dict[str, Any], rows: int | None = None) -> Qwen3ForCausalLM:
    """A Qwen3 model from a config (``head_dim`` set explicitly: its default is 128); ``rows``: embedding rows
    past the tokenizer's vocabulary, as Qwen3's 151,936 for 151,669 tokens (default: one per token)."""
    cfg = Qwen3Config(vocab_size=max(rows or 0, len(tokenizer)), bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, **arch)
    return Qwen3ForCausalLM(cfg)


def load_pretrained(name_or_path: str | Path, dtype: str = "bfloat16"):
    """A Qwen3 checkpoint by name or local path, with the latent tokens added and embeddings resized."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=getattr(torch, dtype))
    add_latent_tokens(tokenizer, model)
    return model, tokenizer


def _base_kwargs(dtype: torch.dtype, qlora: bool) -> dict[str, Any]:
    """``from_pretrained`` arguments of a frozen base: ``dtype``, in 4-bit NF4 for QLoRA."""
    if not qlora:
        return {"dtype": dtype}
    from transformers import BitsAndBytesConfig
    return {"dtype": dtype, "quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                                      bnb_4bit_compute_dtype=dtype)}


def load_for_training(directory: str | Path, tokenizer, model_cfg: ModelConfig):
    """The model a run starts from. Tiny models and full fine-tuning: fp32 master weights (the
    Trainer's ``bf16`` setting computes in bf16 under autocast; bf16 weights under plain AdamW would
    round most updates away at the paper's LRs). LoRA / QLoRA: the frozen base in the configured
    ``dtype`` (4-bit with ``qlora``), adapters and the latent-token rows trained."""
    check_saved(directory)
    if model_cfg.kind == "tiny" or not (model_cfg.lora or model_cfg.qlora):
        return _loaded(Path(directory), lambda: AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32))
    model = AutoModelForCausalLM.from_pretrained(directory, **_base_kwargs(getattr(torch, model_cfg.dtype), model_cfg.qlora))
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    if model_cfg.qlora:
        model = prepare_model_for_kbit_training(model)
    latent_ids = tokenizer.convert_tokens_to_ids(list(LATENT_TOKENS))
    lora = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear", **(model_cfg.lora or {})}
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", trainable_token_indices=latent_ids, **lora))


ADAPTER = "adapter_config.json"
MODEL_CARD = "gplan_config.json"
#: The files of a saved model whose SHA-256 its run card records (weights, and what says how to read them).
CHECKED_FILES = ("*.safetensors", "config.json", ADAPTER)


def file_digests(directory: str | Path) -> dict[str, str]:
    """SHA-256 of each weight and config file of a saved model, by name (what the run card records)."""
    directory = Path(directory)
    return {f.name: sha256_file(f) for pattern in CHECKED_FILES for f in sorted(directory.glob(pattern))}


def check_saved(directory: str | Path) -> None:
    """A saved run's files are the ones its card recorded when it was trained: a damaged, truncated or swapped
    file (another run's config.json, say) is an error naming it, not a model that loads with wrong weights."""
    directory = Path(directory)
    card = directory / MODEL_CARD
    recorded = json.loads(card.read_text(encoding="utf-8")).get("sha256", {}) if card.is_file() else {}
    for name, digest in recorded.items():
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name}: missing (its run card records it)")
        if sha256_file(directory / name) != digest:
            raise ValueError(f"{directory / name}: not the file this run saved (its SHA-256 differs from the run "
                             "card's): damaged or replaced; retrain the run or restore the file")


def _loaded(directory: Path, load: Callable[[], Any]):
    """``load()`` of a saved model, with unreadable files and NaN / infinite weights as errors naming the folder."""
    try:
        model = load()
    except torch.OutOfMemoryError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:  # damaged files, size mismatches
        raise ValueError(f"{directory}: cannot load the model ({type(exc).__name__}: {str(exc)[:200]})") from None
    bad = [n for n, p in model.named_parameters() if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        raise ValueError(f"{directory}: the weights hold NaN or infinite values ({', '.join(bad[:3])}"
                         f"{', ...' if len(bad) > 3 else ''}); the file is damaged or the run diverged")
    return model


def save(model, tokenizer, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Weights (a peft model: its adapter only, exactly as trained), tokenizer and nothing else; ``dtype``:
    cast a full model's weights first (the scale's dtype: bf16 halves a Qwen3 student on disk)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if dtype is not None and not hasattr(model, "peft_config"):
        model = model.to(dtype)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def load(directory: str | Path, dtype: torch.dtype = torch.float32, qlora: bool = False):
    """Reload a saved model and tokenizer from a local directory, its files checked against its run card
    (``check_saved``); an adapter folder (``save`` of a LoRA / QLoRA student) over its base, which stays 4-bit
    for a QLoRA student (its adapter learnt that base)."""
    directory = Path(directory)
    check_saved(directory)
    if not (directory / ADAPTER).is_file():
        model = _loaded(directory, lambda: AutoModelForCausalLM.from_pretrained(directory, dtype=dtype))
        return model, AutoTokenizer.from_pretrained(directory)
    from peft import PeftModel
    base = json.loads((directory / ADAPTER).read_text())["base_model_name_or_path"]
    model = _loaded(directory, lambda: PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, **_base_kwargs(dtype, qlora)), directory))
    return model, AutoTokenizer.from_pretrained(directory)
