"""The stated cost model behind the README's hours per notebook at the GPU scales (issue 11)."""
import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from gplan_lib.evaluation.latency import QWEN3_SHAPES
from gplan_lib.studies.cost_model import GPUS, estimate, main, n_params, picd_response, strategy_need_gb, train_flops


@pytest.mark.parametrize("size", sorted(QWEN3_SHAPES))
def test_parameter_count_matches_the_model_transformers_builds(size):
    with torch.device("meta"):
        model = Qwen3ForCausalLM(Qwen3Config(**QWEN3_SHAPES[size]))
    assert n_params(QWEN3_SHAPES[size])["total"] == sum(p.numel() for p in model.parameters())


def test_training_flops_are_about_eight_n_per_token_with_checkpointing():
    shape = QWEN3_SHAPES["1.7B"]
    n = n_params(shape)
    per_token = train_flops(shape, 1000, 100) / 1100
    assert 8 * n["body"] < per_token < 8 * n["total"] * 1.1
    assert train_flops(shape, 1000, 100, checkpointing=False) == pytest.approx(train_flops(shape, 1000, 100) * 6 / 8)


def test_the_curriculum_shortens_the_response_epoch_by_epoch():
    lengths = [picd_response("picd", e) for e in range(10)]
    assert lengths[0] == picd_response("cot", 0) and lengths[-1] < lengths[0]
    assert all(a >= b for a, b in zip(lengths, lengths[1:]))


def test_the_one_gpu_scale_fits_a_working_day_and_80_gb_and_each_scale_its_launch():
    one = estimate("gpu80-1.7b", GPUS["h100-80gb"])
    assert sum(v["hours"] for v in one.values()) <= 8
    assert max(v["peak_gb"] for v in one.values()) < 80 * 0.9
    full = estimate("full-1.7b", GPUS["h100-80gb"])
    assert sum(v["hours"] for v in full.values()) > 8 * 8, "the full scale is a multi-GPU job"
    assert max(v["peak_gb"] for v in full.values()) < 80 * 0.9  # DDP over 8 GPUs
    assert max(v["peak_gb"] for v in estimate("full-4b", GPUS["h100-80gb"]).values()) < 80 * 0.9  # ZeRO-3
    assert strategy_need_gb("full-4b", 1, None)[1] > 80 * 0.9 and strategy_need_gb("full-4b", 8, None)[1] > 80 * 0.9


def test_the_command_prints_a_table(capsys):
    assert main(["--scale", "gpu80-1.7b"]) == 0
    out = capsys.readouterr().out
    assert "| 02 PICD |" in out and "**total**" in out
