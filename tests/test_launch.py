"""Issue 19: every training is a launched `gplan train` process group - the CPU emulation of a GPU node
(GPLAN_PROCS=2), the real-shape ci-qwen3 scale, the device rules checked before anything loads, and
`make gpu-check` run at a CPU size."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gplan_lib.core.paths import REPO
from gplan_lib.picd.config import PICDConfig
from gplan_lib.training import launch
from gplan_lib.training.launch import DeviceError, Launch, launch_plan, require_device, train_argv
from gplan_lib.training.parallel import run_jobs

BIN = Path(sys.executable).parent
PICD_RUNS = ("direct-cosine", "cot-cosine", "picd-cosine", "picd-constant", "picd-calr")


def _epochs(history: list[dict]) -> tuple[dict[int, int], int | None]:
    """(stage per epoch, the first epoch at under half the peak LR: CALR's switch to eta_polish) of a PICD run's
    logged steps."""
    logs = [h for h in history if "loss" in h]
    stage = {math.ceil(round(h["epoch"], 6)): h["stage"] for h in logs}
    peak = max(h["learning_rate"] for h in logs)
    low = [math.ceil(round(h["epoch"], 6)) for h in logs if h["learning_rate"] < 0.5 * peak]
    return stage, min(low) if low else None


@pytest.fixture(scope="session")
def qwen3_dataset() -> Path:
    """data/synth/ci-qwen3/, as `gplan synth --scale ci-qwen3` writes it."""
    subprocess.run([BIN / "gplan", "synth", "--scale", "ci-qwen3"], check=True, capture_output=True, timeout=300)
    from gplan_lib.core.config import output_dirs
    return output_dirs("ci-qwen3").data


def test_notebooks_02_and_03_on_an_emulated_two_gpu_node(tmp_path, ci_dataset):
    """GPLAN_PROCS=2 makes every training notebooks 02 and 03 start a launched group of two gloo processes (the
    path a multi-GPU node takes, with gloo for NCCL): each run folder says so in launch.json, and every PICD-family
    run trains each epoch at the stage, and drops its LR in the epoch, that the one-process run does."""
    one, two = tmp_path / "one", tmp_path / "two"
    env = {**os.environ, "GPLAN_SCALE": "ci", "GPLAN_CHECKPOINTS": str(two), "GPLAN_PROCS": "2"}
    for nb in ("02_picd", "03_sc_dpo"):
        done = subprocess.run([BIN / "papermill", "--cwd", "notebooks", "--no-progress-bar", "--log-output",
                               f"notebooks/{nb}.ipynb", str(tmp_path / f"{nb}.ipynb")], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "over 2 gloo processes on the CPU" in done.stderr  # what the notebook told its reader
    alone = {k: v for k, v in os.environ.items() if k != "GPLAN_PROCS"}
    subprocess.run([BIN / "python", "-c", "from gplan_lib.picd.experiment import PICDExperiment as E; E('ci').train_all()"],
                   env={**alone, "GPLAN_CHECKPOINTS": str(one)}, check=True, capture_output=True, timeout=900)
    runs = sorted(d for d in (two / "ci").iterdir() if (d / "gplan_config.json").is_file())
    assert [d.name for d in runs] == sorted([*PICD_RUNS, "dpo-sc", "dpo-vanilla"])
    for d in runs:
        record = json.loads((d / "launch.json").read_text())
        assert (record["processes"], record["launcher"], record["device"], record["backend"]) == (2, "torchrun", "cpu", "gloo")
        assert record["threads"] == 1 and record["command"][:2] == ["gplan", "train"]
        if d.name in PICD_RUNS:
            stages, polish = _epochs(json.loads((d / "log_history.json").read_text()))
            alone, polish_alone = _epochs(json.loads((one / "ci" / d.name / "log_history.json").read_text()))
            assert stages == alone == {1: 0, 2: 1, 3: 2}, (d.name, stages, alone)
            if d.name == "picd-calr":  # (cosine crosses half its peak where the step count puts it)
                assert polish == polish_alone == 3
        else:
            history = json.loads((d / "log_history.json").read_text())
            assert any("rewards/chosen" in h for h in history)
    assert json.loads((one / "ci" / "picd-calr" / "launch.json").read_text())["processes"] == 1


def test_the_full_1_7b_path_runs_on_a_cpu_at_ci_qwen3(tmp_path, qwen3_dataset):
    """`gplan train --scale ci-qwen3`: the full-1.7b settings (Qwen3's own tokenizer, released prompts, max_len
    2048, bf16 autocast, gradient checkpointing, response-only loss, periodic checkpoints) at CPU size; then
    SC-DPO from the student."""
    from transformers import AutoConfig, AutoTokenizer
    cfg = PICDConfig.from_scale("ci-qwen3")
    full = PICDConfig.from_scale("full-1.7b")
    assert (cfg.prompt, cfg.max_len) == (full.prompt, full.max_len)
    for key in ("bf16", "gradient_checkpointing", "response_logits"):
        assert getattr(cfg.train, key) is getattr(full.train, key) is True, key
    student = tmp_path / "student"
    done = subprocess.run([BIN / "gplan", "train", "--scale", "ci-qwen3", "--method", "picd-calr", "--out", str(student)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    tok = AutoTokenizer.from_pretrained(student)
    assert len(tok) == 151_643 + 26 + 33 and tok.convert_tokens_to_ids("<|im_start|>") == 151_644
    assert AutoConfig.from_pretrained(student).vocab_size == 151_936
    stages, polish = _epochs(json.loads((student / "log_history.json").read_text()))
    assert stages == {1: 0, 2: 1, 3: 2} and polish == 3
    dpo = tmp_path / "dpo"
    done = subprocess.run([BIN / "gplan", "train", "--scale", "ci-qwen3", "--method", "dpo-sc", "--base", str(student),
                           "--work", str(tmp_path), "--out", str(dpo)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    first = next(h for h in json.loads((dpo / "log_history.json").read_text()) if "loss" in h)
    assert abs(first["rewards/chosen"]) < 1e-3 and abs(first["rewards/rejected"]) < 1e-3  # the reference's autocast


def test_a_pretrained_scale_without_cuda_stops_in_seconds_before_any_download(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is usable here")
    start = time.monotonic()
    done = subprocess.run([BIN / "gplan", "train", "--scale", "full-1.7b", "--method", "picd-calr", "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 2 and time.monotonic() - start < 10
    assert "needs a CUDA GPU" in done.stderr and "driver" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (tmp_path / "hf").exists() and not (tmp_path / "run").exists()  # nothing downloaded, nothing written


def test_what_cannot_use_the_gpus_is_refused(monkeypatch):
    """No CUDA for a pretrained backbone; full fine-tuning of 4B that cannot fit 80 GB GPUs; a Trainer outside a
    launcher with several GPUs visible (nn.DataParallel)."""
    from gplan_lib.studies.cost_model import check_strategy
    monkeypatch.setattr(launch, "cuda_problem", lambda: "no NVIDIA GPU or driver found")
    with pytest.raises(DeviceError, match="fine-tunes Qwen/Qwen3-4B, which needs a CUDA GPU: no NVIDIA"):
        require_device(PICDConfig.from_scale("full-4b").model, "full-4b")
    require_device(PICDConfig.from_scale("ci").model, "ci")  # a tiny model trains anywhere
    assert "ZeRO-3" in check_strategy("full-4b", 8, None, 80)  # DDP: 20 bytes per parameter, 95 GB per GPU
    assert "ZeRO-3" in check_strategy("full-4b", 1, None, 80)
    assert check_strategy("full-4b", 8, "configs/ds_zero3.json", 80) is None  # the scale's own launch
    assert check_strategy("full-1.7b", 8, None, 80) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(RuntimeError, match="nn.DataParallel"):
        launch.refuse_data_parallel()
    monkeypatch.setenv("WORLD_SIZE", "8")
    launch.refuse_data_parallel()  # one process per GPU under torchrun: fine


def test_a_launch_is_the_gplan_train_command_line_and_gplan_procs_is_checked(monkeypatch):
    monkeypatch.setenv("GPLAN_PROCS", "2")
    plan = launch_plan("ci")
    lr = 2e-3 / 3  # 0.0006666666666666666: all 16 digits must cross the command line
    job = Launch("x", "ci", train_argv("ci", 3, "dpo-sc", base="/b", tag="t", overrides={"lr": lr}))
    cmd = launch.command(job, plan)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    assert cmd[6:] == ["-m", "gplan_lib.cli", "train", "--scale", "ci", "--seed", "3", "--method", "dpo-sc", "--base", "/b",
                       "--tag", "t", "--set", f"train.lr={lr!r}"]
    from gplan_lib.cli import _train_overrides
    assert _train_overrides([cmd[-1]]) == {"lr": lr}  # exact through the command line
    assert launch.environment(plan)["OMP_NUM_THREADS"] == "1" and plan.at_once == max(1, launch.cpu_count() // 2)
    monkeypatch.setenv("GPLAN_PROCS", "two")
    with pytest.raises(ValueError, match="GPLAN_PROCS='two'"):
        launch_plan("ci")


def test_a_failed_launch_names_itself_and_a_stopped_one_leaves_no_process(tmp_path):
    """A launch that fails raises with its command and last lines; leaving early (here SIGTERM to the caller, as
    for Ctrl-C or a notebook's interrupt) stops the launched process group."""
    with pytest.raises(RuntimeError, match=r"(?s)bad failed: .*--method picd-wrong.* exited with 2.*unknown method"):
        run_jobs([Launch("bad", "ci", ("--scale", "ci", "--method", "picd-wrong"))])
    script = tmp_path / "caller.py"
    script.write_text("from gplan_lib.training.launch import Launch\nfrom gplan_lib.training.parallel import run_jobs\n"
                      "run_jobs([Launch('slow', 'ci', ('--scale', 'ci', '--method', 'picd-calr', '--out', "
                      f"{str(tmp_path / 'run')!r}, '--retrain'))])\n")
    caller = subprocess.Popen([sys.executable, "-c", "import signal, runpy, sys\n"
                               "signal.signal(signal.SIGTERM, lambda *a: sys.exit(130))\n"
                               f"runpy.run_path({str(script)!r})"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    import psutil
    deadline = time.monotonic() + 120
    while not any("gplan_lib.cli" in " ".join(c.cmdline()) for c in psutil.Process(caller.pid).children(recursive=True)):
        assert time.monotonic() < deadline and caller.poll() is None
        time.sleep(0.2)
    children = psutil.Process(caller.pid).children(recursive=True)
    caller.send_signal(signal.SIGTERM)
    assert caller.wait(60) == 130
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, [p.cmdline() for p in alive]


def test_gpu_check_runs_every_part_at_a_cpu_size(tmp_path, capsys, monkeypatch):
    """`make gpu-check` at the tiny shape: the single-GPU part (steps timed from step 2, DPO at a non-zero LR from
    step 1 so the weights move), and the two launched parts - DDP and DeepSpeed ZeRO-3 - over two gloo processes.
    Without a GPU it says so (exit 0), and with NVIDIA GPUs that torch cannot use it fails (exit 1)."""
    from gplan_lib.studies import gpu_check
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: `make gpu-check` is the check")
    assert gpu_check.main(["--out", str(tmp_path)]) == 0 and "no NVIDIA GPU here" in capsys.readouterr().out
    monkeypatch.setattr(gpu_check, "nvidia_driver", lambda: "535.104.05")
    monkeypatch.setattr(gpu_check, "cuda_problem", lambda: "torch is built for CUDA 13.0 ... driver (535.104.05)")
    assert gpu_check.main(["--out", str(tmp_path)]) == 1 and "535.104.05" in capsys.readouterr().err
    monkeypatch.undo()
    assert gpu_check.main(["--shape", "tiny", "--steps", "3", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "cpu-tiny.json").read_text())
    single = report["parts"]["single tiny"]
    assert single["picd"]["steps"] == 3 and single["picd"]["timed_steps"] == "2..3"
    assert single["sc_dpo"]["steps"] == 3 and min(single["sc_dpo"]["learning_rates"]) > 0
    assert single["picd"]["weights_moved"] > 0.5 and single["sc_dpo"]["weights_moved"] > 0.5
    assert single["decoding"]["PICD"]["tokens_per_s"] > 0
    for part in ("ddp tiny", "zero3 tiny"):
        assert report["parts"][part]["processes"] == 2 and report["parts"][part]["rank_0"]["steps"] == 1, part
