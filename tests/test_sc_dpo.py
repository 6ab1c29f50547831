"""SC-DPO (Sec. 4.2): each loss term by hand, vanilla = sigmoid DPO, sequence log-probs, training."""
from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F
from helpers import TINY_ARCH

from gplan_lib.core.config import load_scale
from gplan_lib.core.data import GsisrRow, load_rows
from gplan_lib.core.intents import MAX_PLAN_LEN
from gplan_lib.core.prompt import PromptOptions, build_messages
from gplan_lib.core.scaffold import latent_valid
from gplan_lib.picd.trainer import CurriculumDataset, encode
from gplan_lib.sc_dpo.experiment import ids_digest
from gplan_lib.sc_dpo.trainer import (
    SCDPOLoss,
    _batch,
    encode_pairs,
    make_dpo_trainer,
    pair_logps,
    read_pairs,
    sc_dpo_loss,
    sequence_logps,
)
from gplan_lib.synthesis.counterfactual import make_pairs
from gplan_lib.synthesis.synthesize import SynthConfig, synthesize
from gplan_lib.synthesis.teacher import ExpertTeacher
from gplan_lib.synthesis.world import simulate_row
from gplan_lib.training.config import TrainConfig
from gplan_lib.training.modeling import add_latent_tokens, tiny_qwen3, train_tokenizer

T = torch.tensor


def test_each_term_by_hand():
    # policy/ref log-probs chosen so that r+ = 0.2*(−10+12) = 0.4, r− = 0.2*(−20+19) = −0.2
    pc, pr, rc, rr = T([-10.0]), T([-20.0]), T([-12.0]), T([-19.0])
    w = SCDPOLoss()
    loss, logs = sc_dpo_loss(pc, pr, rc, rr, w)
    r_plus, r_minus = 0.4, -0.2
    gap, center = 0.6, 0.1
    assert logs["rewards/chosen"] == pytest.approx(r_plus) and logs["rewards/rejected"] == pytest.approx(r_minus)
    assert logs["rewards/margins"] == pytest.approx(gap) and logs["rewards/accuracies"] == 1.0
    assert logs["loss/dpo"] == pytest.approx(math.log(1 + math.exp(-gap)))
    assert logs["loss/anchor"] == 0.0                                   # r+ > delta = 0
    assert logs["loss/gap_low"] == 0.0                                  # gap above 0.10
    assert logs["loss/gap_high"] == pytest.approx((gap - 0.20) ** 2)    # gap above 0.20
    assert logs["loss/center"] == pytest.approx(center ** 2)
    expected = math.log(1 + math.exp(-gap)) + 2 * (gap - 0.2) ** 2 + 3 * center ** 2
    assert loss.item() == pytest.approx(expected)
    # r+ < 0 and a small gap: the anchor and the lower gap bound bite.
    loss, logs = sc_dpo_loss(T([-13.0]), T([-19.6]), T([-12.0]), T([-19.0]), w)  # r+ = -0.2, r- = -0.12
    assert logs["loss/anchor"] == pytest.approx(0.04) and logs["loss/gap_low"] == pytest.approx((0.10 + 0.08) ** 2)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(0.08)) + 5 * 0.04 + 10 * 0.18 ** 2 + 3 * 0.16 ** 2)


def test_vanilla_is_sigmoid_dpo_as_trl_computes_it():
    torch.manual_seed(0)
    pc, pr, rc, rr = (torch.randn(16) * 5 for _ in range(4))
    loss, logs = sc_dpo_loss(pc, pr, rc, rr, SCDPOLoss.vanilla(beta=0.1))
    # trl 1.16 DPOTrainer, loss_type="sigmoid": -logsigmoid(beta * (chosen_logratios - rejected_logratios))
    trl = -F.logsigmoid(0.1 * ((pc - rc) - (pr - rr))).mean()
    assert loss.item() == pytest.approx(trl.item(), rel=1e-6)
    assert logs["loss/anchor"] >= 0 and loss.item() == pytest.approx(logs["loss/dpo"], rel=1e-6)


def test_gradient_of_vanilla_pushes_rejected_down_without_bound_sc_dpo_does_not():
    pc, rc, rr = T([-10.0]), T([-10.0]), T([-10.0])
    for w, bounded in ((SCDPOLoss.vanilla(), False), (SCDPOLoss(), True)):
        pr = T([-40.0], requires_grad=True)  # y- already far below the reference: gap = 6
        sc_dpo_loss(pc, pr, rc, rr, w)[0].backward()
        # d loss / d log pi(y-) > 0 means gradient descent lowers log pi(y-) further.
        assert (pr.grad.item() > 0) != bounded


@pytest.fixture(scope="module")
def setup():
    teacher = ExpertTeacher()
    records = [rec for i in range(40) for rec in make_pairs(simulate_row(31, i), random.Random(i), teacher)][:16]
    opts = PromptOptions.named("tiny")
    corpus = [m["content"] for r in records for m in build_messages(r.row, opts)]
    tok = train_tokenizer(corpus + [r.chosen for r in records], vocab_size=500)
    add_latent_tokens(tok)
    torch.manual_seed(0)
    model = tiny_qwen3(tok, TINY_ARCH)
    return model, tok, [r.as_record() for r in records], opts


@pytest.fixture(scope="module")
def ci_pairs(tmp_path_factory):
    """Every pair record of the ci scale's dataset, and a tokenizer built as the ci experiment builds it."""
    cfg = load_scale("ci")
    out = tmp_path_factory.mktemp("ci-data")
    synthesize(SynthConfig(**cfg["synth"], workers=1), out)
    opts = PromptOptions.named(cfg["picd"]["prompt"])
    rows = load_rows(out / "train.csv")[: cfg["picd"]["n_train"]]
    tok = train_tokenizer([m["content"] for r in rows for m in build_messages(r, opts)] + [r["raw_labels"] for r in rows],
                          cfg["picd"]["model"]["vocab_size"])
    add_latent_tokens(tok)
    return read_pairs(out / "pairs_train.jsonl") + read_pairs(out / "pairs_test.jsonl"), tok, opts


def test_pair_responses_are_the_picd_full_stage_targets(ci_pairs):
    """What DPO scores is token for token what PICD trains at its last stage (read through the
    curriculum dataset the Trainer reads) and what the student generates."""
    records, tok, opts = ci_pairs
    pairs = encode_pairs(records, tok, opts)
    for rec, pair in zip(records, pairs):
        for key in ("chosen", "rejected"):
            row = GsisrRow(rec["row"]).replace(raw_labels=rec[key])
            data = CurriculumDataset(encode([row], tok, opts, max_len=4096), "picd")
            data.set_curriculum_epoch(MAX_PLAN_LEN + 3)  # past every sample's last stage
            item = data[0]
            target = item["input_ids"][len(data.samples[0].prompt):]
            assert getattr(pair, key) == target, (rec["pair_id"], key)
            assert latent_valid(tok.decode(target, skip_special_tokens=False).replace(tok.eos_token, ""))[0]
        assert pair.prompt == data.samples[0].prompt
    assert len(records) > 100


def test_reference_cache_follows_the_encoded_ids(setup):
    model, tok, records, opts = setup
    pairs = encode_pairs(records[:4], tok, opts)
    before = ids_digest(pairs)
    pairs[0].chosen = pairs[0].chosen[:-2] + pairs[0].chosen[-1:]
    assert ids_digest(pairs) != before


def test_sequence_logps_sum_response_tokens_only(setup):
    model, tok, records, opts = setup
    pairs = encode_pairs(records[:3], tok, opts)
    ids, att, resp = _batch([(p.prompt, p.chosen) for p in pairs], tok.pad_token_id)
    got = sequence_logps(model, ids, att, resp)
    for i, p in enumerate(pairs):
        seq = torch.tensor([p.prompt + p.chosen])
        logp = F.log_softmax(model(input_ids=seq).logits[0, :-1], -1)
        manual = sum(logp[len(p.prompt) - 1 + k, t].item() for k, t in enumerate(p.chosen))
        assert got[i].item() == pytest.approx(manual, rel=1e-4)


def test_training_logs_trl_names_and_starts_at_the_reference(setup, tmp_path):
    model, tok, records, opts = setup
    pairs = encode_pairs(records, tok, opts)
    ref_c, ref_r = pair_logps(model, pairs, tok.pad_token_id, batch_size=8)
    for p, c, r in zip(pairs, ref_c, ref_r):
        p.ref_chosen, p.ref_rejected = float(c), float(r)
    hp = TrainConfig(batch_size=4, lr=1e-3, warmup_ratio=0.03, logging_steps=1, disable_tqdm=True)
    tr = make_dpo_trainer(model, tok, pairs, SCDPOLoss(), hp, str(tmp_path))
    tr.train()
    logs = [l for l in tr.state.log_history if "loss" in l]
    first = logs[0]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "logps/rejected", "loss/anchor", "loss/gap_low", "loss/gap_high", "loss/center"):
        assert key in first
    # policy == reference at step 0: the training forward scores exactly what the reference pass scored
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
    assert first["rewards/rejected"] == pytest.approx(0.0, abs=1e-5)
    assert len(logs) == 4


def test_lora_policy_reference_is_the_adapter_disabled_base(setup):
    from peft import LoraConfig, get_peft_model

    model, tok, records, opts = setup
    pairs = encode_pairs(records[:4], tok, opts)
    base_c, base_r = pair_logps(model, pairs, tok.pad_token_id)
    policy = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # make the adapter change the outputs
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    ref_c, ref_r = pair_logps(policy, pairs, tok.pad_token_id)
    assert ref_c == pytest.approx(base_c, rel=1e-5) and ref_r == pytest.approx(base_r, rel=1e-5)
    ids, att, resp = _batch([(p.prompt, p.chosen) for p in pairs], tok.pad_token_id)
    with torch.no_grad():
        adapted = sequence_logps(policy, ids, att, resp).numpy()
    assert abs(adapted - base_c).max() > 1e-3
    policy.unload()  # leave the shared fixture model as it was


def test_response_only_log_probs_equal_the_full_computation(setup, monkeypatch):
    from gplan_lib.training import trainer as plumbing
    model, tok, records, opts = setup
    monkeypatch.setattr(plumbing, "CE_CHUNK_ELEMENTS", 5 * model.config.vocab_size)  # several chunks per batch
    pairs = encode_pairs(records[:6], tok, opts)
    ids, att, resp = _batch([(p.prompt, p.chosen) for p in pairs], tok.pad_token_id)
    with torch.no_grad():
        full = sequence_logps(model, ids, att, resp)
        part = sequence_logps(model, ids, att, resp, response_only=True)
    assert torch.allclose(full, part, rtol=1e-5, atol=1e-4)


def test_in_mixed_precision_the_rewards_start_at_zero(setup, tmp_path):
    """Issue 19: the policy trains under bf16 autocast, so the reference is scored under it too (``pair_logps``
    with ``bf16``); scored in fp32, as before, the rewards at step 0 were not 0 (here 4e-4; 0.007 nats on the ci
    student)."""
    _, tok, records, opts = setup
    pairs = encode_pairs(records, tok, opts)
    hp = TrainConfig(batch_size=4, lr=1e-3, warmup_ratio=0.03, logging_steps=1, disable_tqdm=True, bf16=True)
    start = {}
    for bf16_reference in (False, True):
        torch.manual_seed(0)
        policy = tiny_qwen3(tok, TINY_ARCH)  # fresh: a model another Trainer prepared is not wrapped in autocast again
        ref_c, ref_r = pair_logps(policy, pairs, tok.pad_token_id, batch_size=8, bf16=bf16_reference)
        for p, c, r in zip(pairs, ref_c, ref_r):
            p.ref_chosen, p.ref_rejected = float(c), float(r)
        tr = make_dpo_trainer(policy, tok, pairs, SCDPOLoss(), hp, str(tmp_path / str(bf16_reference)))
        tr.train()
        first = next(log for log in tr.state.log_history if "loss" in log)
        start[bf16_reference] = max(abs(first["rewards/chosen"]), abs(first["rewards/rejected"]))
    print(f"largest |reward| at step 0: reference in fp32 {start[False]:.2e}, under bf16 autocast {start[True]:.2e}")
    assert start[True] <= 1e-6 and start[False] > 1e-4, start
