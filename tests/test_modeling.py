"""The model factory and student inference: the from_pretrained paths a Qwen3 checkpoint takes,
LoRA on the latent-token rows, and `gplan predict --model DIR` feeding `gplan score`."""
from __future__ import annotations

import json

import pytest
import torch

from gplan_lib.cli import main
from gplan_lib.data import write_gsisr_csv
from gplan_lib.generation import MODEL_CARD, StudentPlanner, model_card
from gplan_lib.modeling import (chat_prompt, load_for_training, load_pretrained, merged, save,
                                tiny_qwen3, train_tokenizer)
from gplan_lib.prompt import PromptOptions, build_messages, render_chatml
from gplan_lib.scaffold import LATENT_TOKENS
from helpers import TINY_ARCH, teacher_rows



@pytest.fixture(scope="module")
def rows():
    return teacher_rows(21, 12)


@pytest.fixture(scope="module")
def base_dir(rows, tmp_path_factory):
    """A local stand-in for a Qwen3 checkpoint directory (no latent tokens yet)."""
    opts = PromptOptions.named("tiny")
    tok = train_tokenizer([m["content"] for r in rows for m in build_messages(r, opts)] + [r["raw_labels"] for r in rows],
                          vocab_size=500)
    torch.manual_seed(0)
    return save(tiny_qwen3(tok, TINY_ARCH), tok, tmp_path_factory.mktemp("base"))


def test_chat_template_matches_the_released_prompt(base_dir, rows):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(base_dir)
    msgs = build_messages(rows[0], PromptOptions.named("compact"))
    assert chat_prompt(tok, msgs) == render_chatml(msgs)


def test_pretrained_path_adds_latent_tokens_and_lora_trains_their_rows(base_dir):
    model, tok = load_pretrained(base_dir, dtype="float32")
    ids = tok.convert_tokens_to_ids(list(LATENT_TOKENS))
    assert len(set(ids)) == 33 and model.get_input_embeddings().num_embeddings == len(tok)
    assert tok.tokenize("<T_3_b>") == ["<T_3_b>"]
    d = save(model, tok, base_dir.parent / "with_latent")
    lora = load_for_training(d, tok, {"kind": "pretrained", "dtype": "float32", "lora": {"r": 4, "lora_alpha": 8}})
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any("trainable_tokens" in n for n in trainable)
    assert sum(p.numel() for n, p in lora.named_parameters() if p.requires_grad) < sum(p.numel() for p in lora.parameters()) / 2
    plain = merged(lora)
    assert not hasattr(plain, "peft_config") and plain.get_input_embeddings().num_embeddings == len(tok)


def test_student_predict_then_score(base_dir, rows, tmp_path, capsys):
    model, tok = load_pretrained(base_dir, dtype="float32")
    d = save(model, tok, tmp_path / "student")
    (d / MODEL_CARD).write_text(json.dumps(model_card("picd", PromptOptions.named("tiny"))))
    recs = StudentPlanner(d).generate(rows[:3], batch_size=2, max_new_tokens=8)
    assert [r["id"] for r in recs] == [r.id for r in rows[:3]]
    assert all(1 <= r["new_tokens"] <= 8 and r["latency_ms"] > 0 for r in recs)
    gold = write_gsisr_csv(rows, tmp_path / "gold.csv")
    assert main(["predict", "--model", str(d), "--data", str(gold), "--out", str(tmp_path / "p.jsonl"),
                 "--max-new-tokens", "8", "--batch-size", "4"]) == 0
    capsys.readouterr()
    assert main(["score", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 12 and 0 <= summary["acc1"] <= 1


def test_score_reports_latent_validity_for_latent_outputs(rows, tmp_path, capsys):
    from gplan_lib.intents import dumps_plan
    from gplan_lib.scaffold import Reasoning
    gold = write_gsisr_csv(rows[:2], tmp_path / "g.csv")
    good = Reasoning.parse(rows[0].thought).fold(99) + dumps_plan(rows[0].plan)
    bad = "<THOUGHT><T_1_a></THOUGHT>" + dumps_plan(rows[1].plan)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"id": r.id, "output": o}, ensure_ascii=False) + "\n"
                                              for r, o in zip(rows[:2], (good, bad))), encoding="utf-8")
    assert main(["score", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["latent_valid"] == 0.5 and s["acc1"] == 1.0
