"""The model factory and student inference: the from_pretrained paths a Qwen3 checkpoint takes,
LoRA on the latent-token rows, and `gplan predict --model DIR` feeding `gplan score`."""
from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY_ARCH, teacher_rows

from gplan_lib.cli import main
from gplan_lib.core.config import replace
from gplan_lib.core.data import write_gsisr_csv
from gplan_lib.core.prompt import PromptOptions, build_messages, render_chatml
from gplan_lib.core.scaffold import LATENT_TOKENS
from gplan_lib.picd.config import PICDTrainConfig
from gplan_lib.training.config import ModelConfig
from gplan_lib.training.generation import MODEL_CARD, StudentPlanner, model_card
from gplan_lib.training.modeling import (
    add_latent_tokens,
    chat_prompt,
    load,
    load_for_training,
    load_pretrained,
    save,
    tiny_qwen3,
    train_tokenizer,
)


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
    lora = load_for_training(d, tok, ModelConfig(kind="pretrained", name=str(d), dtype="float32", lora={"r": 4, "lora_alpha": 8}))
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any("trainable_tokens" in n for n in trainable)
    assert sum(p.numel() for n, p in lora.named_parameters() if p.requires_grad) < sum(p.numel() for p in lora.parameters()) / 2


@pytest.mark.parametrize("qlora", [False, True])
def test_a_lora_student_is_saved_as_its_adapter_and_loads_back_exactly(base_dir, tmp_path, qlora):
    """Issue 19: a LoRA / QLoRA student was merged before saving, which on a 4-bit base re-quantises the merged
    weights, so deltas below one NF4 step vanished. It is saved as its adapter (and trained latent rows) and
    loads back over the same base, 4-bit for QLoRA, with the trained model's outputs."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(base_dir)
    torch.manual_seed(0)  # bitsandbytes' CPU kernels need rows of 64 or more: hidden size 128
    model = tiny_qwen3(tok, {**TINY_ARCH, "hidden_size": 128, "intermediate_size": 256, "head_dim": 64})
    add_latent_tokens(tok, model)
    start = save(model, tok, tmp_path / "start")
    cfg = ModelConfig(kind="pretrained", name=str(start), dtype="float32", lora={"r": 4, "lora_alpha": 8}, qlora=qlora)
    torch.manual_seed(0)
    student = load_for_training(start, tok, cfg)
    with torch.no_grad():  # a small update, as a few steps at a small LR leave it
        for n, p in student.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 1e-3)
    student.eval()
    ids = torch.tensor([tok("<|im_start|>user\n去机场<|im_end|>", add_special_tokens=False).input_ids])
    with torch.no_grad(), student.disable_adapter():
        base = student(input_ids=ids).logits
    with torch.no_grad():
        trained = student(input_ids=ids).logits
    out = save(student, tok, tmp_path / "student")
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    loaded, _ = load(out, torch.float32, qlora=qlora)
    with torch.no_grad():
        got = loaded.eval()(input_ids=ids).logits
    assert (trained - base).abs().max() > 1e-4  # the update changes the outputs ...
    assert torch.allclose(got, trained, atol=1e-6, rtol=1e-5)  # ... and survives saving and loading


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
    from gplan_lib.core.intents import dumps_plan
    from gplan_lib.core.scaffold import Reasoning
    gold = write_gsisr_csv(rows[:2], tmp_path / "g.csv")
    good = Reasoning.parse(rows[0].thought).fold(99) + dumps_plan(rows[0].plan)
    bad = "<THOUGHT><T_1_a></THOUGHT>" + dumps_plan(rows[1].plan)
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"id": r.id, "output": o}, ensure_ascii=False) + "\n"
                                              for r, o in zip(rows[:2], (good, bad))), encoding="utf-8")
    assert main(["score", "--pred", str(tmp_path / "p.jsonl"), "--gold", str(gold), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["latent_valid"] == 0.5 and s["acc1"] == 1.0


def test_latent_rows_are_set_even_when_the_matrix_has_spare_rows(base_dir):
    """Issue 11: Qwen3's embedding has more rows than its tokenizer has tokens, so no resize happens and
    the latent tokens would land on rows nobody initialised."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(base_dir)
    torch.manual_seed(1)
    model = tiny_qwen3(tok, TINY_ARCH)
    model.resize_token_embeddings(len(tok) + 64)  # padded past the vocabulary, like Qwen3's 151,936 rows
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        emb[len(tok):] = 7.0  # what a checkpoint's spare rows might hold
    before, rows_before = len(tok), emb.shape[0]
    ids = add_latent_tokens(tok, model)
    assert model.get_input_embeddings().weight.shape[0] == rows_before  # no resize was needed
    mean = emb[:before].mean(0)
    assert torch.allclose(emb[ids], mean.expand(len(ids), -1)) and not (emb[ids] == 7.0).any()


def test_mixed_precision_moves_weights_like_fp32(base_dir, rows, tmp_path):
    """Issue 11: at the paper's LR (5e-6) bf16 weights under AdamW barely move; fp32 master weights with
    bf16 autocast (what the full scales now run) move like an fp32 run."""
    from gplan_lib.picd.trainer import encode, make_trainer
    model, tok = load_pretrained(base_dir, dtype="float32")
    start = save(model, tok, tmp_path / "start")
    samples = encode(rows, tok, PromptOptions.named("tiny"), 2048)
    hp = PICDTrainConfig(epochs=1, batch_size=4, lr=5e-6, polish_lr=1e-6, warmup_ratio=0.0, logging_steps=1,
                         disable_tqdm=True, b_star=1)

    def moved(model, bf16: bool) -> float:
        init = {n: p.detach().float().clone() for n, p in model.named_parameters()}
        make_trainer(model, tok, samples, "picd", "constant", replace(hp, bf16=bf16), str(tmp_path / "t")).train()
        changed = sum(int((p.detach().float() != init[n]).sum()) for n, p in model.named_parameters())
        return changed / sum(p.numel() for p in model.parameters())

    full = ModelConfig(kind="pretrained", name=str(start), dtype="bfloat16")
    fp32 = moved(load_for_training(start, tok, full), bf16=False)
    mixed_model = load_for_training(start, tok, full)
    assert next(mixed_model.parameters()).dtype == torch.float32  # master weights
    mixed = moved(mixed_model, bf16=True)
    from transformers import AutoModelForCausalLM
    bf16_weights = moved(AutoModelForCausalLM.from_pretrained(start, dtype=torch.bfloat16), bf16=False)
    print(f"weights moved: fp32 {fp32:.3f}, mixed {mixed:.3f}, bf16 weights {bf16_weights:.3f}")
    assert fp32 > 0.9 and abs(mixed - fp32) < 0.02, (fp32, mixed)
    assert bf16_weights < 0.5 * fp32, bf16_weights
