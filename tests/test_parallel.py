"""Work side by side (training.parallel): one-thread workers, job order and errors, side losses over ranks, and the
point of it - a run trained by a launched `gplan train` is bit for bit the run trained here on one thread."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gplan_lib.picd.experiment import PICDExperiment, variant
from gplan_lib.training.parallel import Job, one_thread, run_jobs


def test_workers_run_on_one_thread_without_progress_bars():
    before = os.environ.get("TQDM_DISABLE")
    out = run_jobs([Job("threads", torch.get_num_threads), Job("bars", os.getenv, ("TQDM_DISABLE",))], workers=2)
    assert out == {"threads": 1, "bars": "1"}
    assert os.environ.get("TQDM_DISABLE") == before  # this process's environment is as it was


def test_jobs_wait_for_what_they_need_and_errors_name_the_job():
    out = run_jobs([Job("b", math.sqrt, (16.0,), after=("a",)), Job("a", math.sqrt, (4.0,))], workers=1)
    assert out == {"a": 2.0, "b": 4.0}
    with pytest.raises(ValueError, match="unknown jobs \\['z'\\]"):
        run_jobs([Job("a", math.sqrt, (4.0,), after=("z",))])
    with pytest.raises(RuntimeError, match="wait for jobs that never ran"):
        run_jobs([Job("a", math.sqrt, (4.0,), after=("b",)), Job("b", math.sqrt, (4.0,), after=("a",))])
    with pytest.raises(RuntimeError, match="bad failed in its worker process: ValueError: math domain error"):
        run_jobs([Job("bad", math.sqrt, (-1.0,))])


def test_a_failure_stops_the_runs_still_training():
    """Leaving early (a failed job here; Ctrl-C, a notebook's interrupt or SIGTERM alike) terminates the runs
    still training: before, they went on in the background and the process waited for them at exit."""
    import psutil
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="bad failed"):
        run_jobs([Job("slow", time.sleep, (120.0,)), Job("bad", math.sqrt, (-1.0,))], workers=2)
    workers = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):  # a child that exits meanwhile is not a worker left behind
            workers += [child.pid] if "spawn_main" in " ".join(child.cmdline()) else []
    assert workers == [] and time.monotonic() - start < 60


def test_under_torchrun_one_rank_is_the_main_process(tmp_path):
    """A bare accelerate PartialState() on a CPU under torchrun reported one process, so both ranks took
    themselves for rank 0 and deleted and rebuilt the same run folder (a rank's `File exists`, exit 2, in CI).
    ``process_state`` asks for it as the Trainer does; ``close_process_group`` then ends both ranks cleanly."""
    out = _two_ranks(tmp_path, "from gplan_lib.training.parallel import process_state\n"
                                "state = process_state()\n"
                                "out = f\"{'main' if state.is_main_process else 'other'} {state.num_processes}\"\n")
    assert out == {"0": "main 2", "1": "other 2"}


def _two_ranks(tmp_path: Path, body: str) -> dict[str, str]:
    """Run ``body`` under torchrun in two gloo processes; what each rank left in ``out`` (each rank writes its own
    file: the two processes' stdout interleaves)."""
    probe = tmp_path / "probe.py"
    probe.write_text("import json, os, pathlib, sys\nfrom gplan_lib.training.parallel import close_process_group\n"
                     f"{body}pathlib.Path(sys.argv[1], os.environ['RANK']).write_text(out)\nclose_process_group()\n")
    done = subprocess.run([Path(sys.executable).parent / "torchrun", "--nproc_per_node", "2", str(probe), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {r: (tmp_path / r).read_text() for r in ("0", "1")}


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_a_launched_run_is_the_run_trained_here_on_one_thread(tmp_path, ci_dataset):
    """The weights do not depend on where the run trained: a launched `gplan train` beside another run, or this
    process on one thread (so the launcher changes no number, and the core count changes none)."""
    direct, calr = variant("Direct-SFT"), variant("PICD (CALR)")
    side = PICDExperiment("ci", 0, work=tmp_path / "side")
    histories = side.train_all([direct, calr], workers=2)
    assert set(histories) == {"Direct-SFT", "PICD (CALR)"} and all(histories.values())
    here = PICDExperiment("ci", 0, work=tmp_path / "here")
    with one_thread():
        here.train(calr)
    assert _digest(side.run_dir(calr)) == _digest(here.run_dir(calr))
    assert side.jobs([direct, calr]) == []  # both trained: nothing left to run


def test_side_losses_are_averaged_over_the_ranks(tmp_path):
    """Issue 19: `loss` was averaged over ranks but `loss_cot`, `loss_json` and the DPO rewards were rank 0's
    window means. Each rank records different values (one records a term the other lacks); both log the mean of
    all of them."""
    out = _two_ranks(tmp_path, "import torch\nfrom transformers import TrainingArguments\n"
                                "from gplan_lib.training.trainer import WindowedLogs\n"
                                "rank = int(os.environ['RANK'])\n"
                                "tr = WindowedLogs(model=torch.nn.Linear(2, 2), args=TrainingArguments("
                                "output_dir=sys.argv[1], use_cpu=True, report_to=[]))\n"
                                "tr.record({'loss_cot': 1.0 + rank})\n"
                                "tr.record({'loss_cot': 3.0 + rank, **({'loss_json': 5.0} if rank else {})})\n"
                                "logs = {}\ntr.log(logs)\nout = json.dumps(logs)\n")
    for rank, text in out.items():
        logged = json.loads(text)
        assert (logged["loss_cot"], logged["loss_json"]) == (2.5, 5.0), (rank, logged)
