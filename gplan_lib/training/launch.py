"""The one launcher: every training is a launched ``gplan train`` process group.

Notebooks, ``make run``, ``make seeds`` and ``make regimes`` never train in their own process. Each training
(a PICD-family run, a DPO variant, the DPO reference pass, the regime study's backbone) is a ``Launch``: the
arguments of ``gplan train``, started by ``training.parallel.run_jobs`` as

- on a GPU machine: ``torchrun --standalone --nproc_per_node N -m gplan_lib.cli train ...`` over the N GPUs the
  scale's ``launch.gpus`` asks for (plain ``python -m gplan_lib.cli train`` when N = 1, on one visible GPU),
  with the scale's DeepSpeed config; one launch at a time;
- on a CPU: one process on one thread, one launch per core side by side (a run's weights then depend on
  neither the core count nor the runs beside it); with ``$GPLAN_PROCS=P``, P gloo processes per launch, a
  CPU emulation of a P-GPU node, ``cores // P`` launches at a time.

Its lines stream into the caller (a notebook cell, a terminal) and the trained run is read back from its
folder, where rank 0 records how it was launched (``launch.json``). Written here because no library
launches a process group from inside a notebook kernel and streams it back (accelerate's
``notebook_launcher`` forks the kernel itself, which fails once the kernel has initialised CUDA).

Also here: the device rules every launched training checks before it loads anything - a pretrained
backbone needs usable CUDA (``require_device``), a strategy that cannot fit the GPUs is refused
(``strategy_problem``), and an HF Trainer that would wrap the model in ``nn.DataParallel`` is an error
(``refuse_data_parallel``).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.files import write_json
from ..core.paths import REPO
from .config import LaunchConfig, ModelConfig

#: The process-group timeout (``TrainingArguments.ddp_timeout`` and accelerate's state alike): rank 0 alone
#: downloads a backbone and writes the initial copy while the other ranks wait (NCCL's default is 10 minutes).
PROCESS_GROUP_TIMEOUT_S = 2 * 3600
#: What launched this process, read when it started (accelerate and DeepSpeed set ACCELERATE_* variables later).
LAUNCHER = (("accelerate" if any(k.startswith("ACCELERATE_") for k in os.environ) else "torchrun")
            if "TORCHELASTIC_RUN_ID" in os.environ else "python")
#: The NVIDIA driver the pinned torch's CUDA build needs (torch==2.13.0 on PyPI is built for CUDA 13.0).
DRIVER_NEEDED = "R580 (580.65) or newer"
PLATFORM = "https://pytorch.org/get-started/locally/"


@dataclass(frozen=True)
class Launch:
    """One training as the arguments of ``gplan train`` (after ``train``), named for progress and for
    ``after`` (the names of jobs that must finish first); ``scale`` decides how it is launched."""

    name: str
    scale: str
    argv: tuple[str, ...]
    after: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class LaunchPlan:
    """How a scale's launches run here: processes per launch, device, DeepSpeed config, launches at once."""

    processes: int
    device: str                          # cuda | cpu
    deepspeed: str | None
    at_once: int

    @property
    def launcher(self) -> str:
        return "torchrun" if self.processes > 1 else "python"


def train_argv(scale: str, seed: int, method: str, *, work: str | Path | None = None, init_from: str | Path | None = None,
               base: str | Path | None = None, tag: str = "", overrides: dict[str, Any] | None = None,
               data: str | Path | None = None, retrain: bool = False) -> tuple[str, ...]:
    """The ``gplan train`` arguments of one training (``cli.cmd_train`` reads them back): ``overrides`` are
    training settings (``--set train.<field>=<JSON value>``, exact for floats)."""
    argv = ["--scale", scale, "--seed", str(seed), "--method", method]
    for flag, value in (("--work", work), ("--init-from", init_from), ("--base", base), ("--tag", tag), ("--data", data)):
        argv += [flag, str(value)] if value else []
    for k, v in (overrides or {}).items():
        argv += ["--set", f"train.{k}={json.dumps(v)}"]
    return (*argv, *(["--retrain"] if retrain else []))


def cpu_count() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def launched_rank() -> tuple[int, int] | None:
    """(rank, world size) of this process when torchrun / accelerate launched it among several, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else None


def launch_config(scale: str) -> LaunchConfig:
    """The scale's ``launch`` section (defaults where it has none)."""
    from ..core.config import build, load_scale
    return build(LaunchConfig, load_scale(scale).get("launch"), f"{scale}.launch")


def requested_processes() -> int | None:
    """$GPLAN_PROCS: processes per launch, overriding the scale (2 on a CPU emulates a two-GPU node)."""
    text = os.environ.get("GPLAN_PROCS", "").strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ValueError(f"GPLAN_PROCS={text!r}: must be a whole number of processes >= 1")
    return int(text)


def launch_plan(scale: str) -> LaunchPlan:
    """Processes, device and concurrency of ``scale``'s launches on this machine."""
    import torch
    cfg, procs = launch_config(scale), requested_processes()
    deepspeed = str(REPO / cfg.deepspeed) if cfg.deepspeed else None
    if torch.cuda.is_available():
        visible = torch.cuda.device_count()
        n = procs or (visible if cfg.gpus == "all" else cfg.gpus)
        if n > visible:
            raise ValueError(f"scale {scale!r} launches {n} processes, one per GPU, but {visible} GPU(s) are visible "
                             "(set GPLAN_PROCS or CUDA_VISIBLE_DEVICES)")
        return LaunchPlan(n, "cuda", deepspeed, 1)
    n = procs or 1
    return LaunchPlan(n, "cpu", deepspeed, max(1, cpu_count() // n))


def command(launch: Launch, plan: LaunchPlan) -> list[str]:
    """The process command line of ``launch`` under ``plan``."""
    argv = [*launch.argv, *(["--deepspeed", plan.deepspeed] if plan.deepspeed and "--deepspeed" not in launch.argv else [])]
    if plan.processes == 1:
        return [sys.executable, "-m", "gplan_lib.cli", "train", *argv]
    # torchrun reads --run itself (its --run-path): launches write --method
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(plan.processes),
            "-m", "gplan_lib.cli", "train", *argv]


def environment(plan: LaunchPlan) -> dict[str, str]:
    """What a launch adds to the caller's environment: one thread per process on a CPU (the weights a
    notebook's run has on any core count), the GPUs it may use, and progress as printed lines (a
    subprocess's bars would reach a notebook as raw carriage returns)."""
    env = {"TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    if plan.device == "cpu":
        return {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(plan.processes)]
    return {**env, "CUDA_VISIBLE_DEVICES": ",".join(ids[: plan.processes])}


def record(deepspeed: str | None = None) -> dict[str, Any]:
    """launch.json: how the process group that trains a run was launched (written by rank 0)."""
    import torch
    launched = launched_rank()
    cuda = torch.cuda.is_available()
    return {"processes": launched[1] if launched else 1, "launcher": LAUNCHER, "device": "cuda" if cuda else "cpu",
            "backend": ("nccl" if cuda else "gloo") if launched else None, "deepspeed": deepspeed,
            "threads": torch.get_num_threads(), "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            "command": ["gplan", *sys.argv[1:]], "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "machine": platform.machine()}


class DeviceError(ValueError):
    """This machine cannot run what the scale asks for (an input error: exit 2, one line)."""


def nvidia_driver() -> str | None:
    """The loaded NVIDIA kernel driver's version, or None when there is none."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return "present" if shutil.which("nvidia-smi") else None
    return next((w for w in text.split() if w[:1].isdigit() and w.count(".") >= 1), "present")


def cuda_problem() -> str | None:
    """Why torch cannot use a GPU here, or None when it can."""
    import torch
    if torch.cuda.is_available():
        return None
    driver, built = nvidia_driver(), torch.version.cuda
    if built is None:
        return (f"this torch ({torch.__version__}) is a CPU build; on a GPU machine install the CUDA build "
                f"(torch=={torch.__version__.split('+')[0]} from PyPI is built for CUDA 13.0 and needs NVIDIA driver "
                f"{DRIVER_NEEDED}), see {PLATFORM}")
    if driver:
        return (f"torch {torch.__version__} is built for CUDA {built} and cannot use this machine's NVIDIA driver "
                f"({driver}); CUDA {built} needs driver {DRIVER_NEEDED}: update the driver, or install the same torch "
                f"built for CUDA 12 from the PyTorch index ({PLATFORM})")
    return f"no NVIDIA GPU or driver found (torch {torch.__version__} is built for CUDA {built})"


def require_device(model: ModelConfig, scale: str) -> None:
    """A pretrained backbone (Qwen3-1.7B / 4B) is fine-tuned on GPUs only: without usable CUDA, stop here -
    before any download - instead of training it on one-thread CPU workers for weeks."""
    if model.kind == "pretrained":
        problem = cuda_problem()
        if problem:
            raise DeviceError(f"scale {scale!r} fine-tunes {model.name}, which needs a CUDA GPU: {problem}")


def static_bytes_per_parameter(processes: int, deepspeed: str | None) -> float:
    """Bytes per parameter that full fine-tuning holds on each GPU for the whole run: fp32 master weights,
    fp32 gradients and AdamW's two fp32 moments (16), plus DDP's gradient buckets (4) on several processes;
    ZeRO-3 shards all of it over the processes."""
    if deepspeed:
        return 16 / processes
    return 16 + (4 if processes > 1 else 0)


def strategy_problem(model: ModelConfig, n_parameters: float, need_gb: float, gpu_gb: float, processes: int,
                     deepspeed: str | None) -> str | None:
    """Why full fine-tuning of ``model`` cannot run on GPUs of ``gpu_gb`` when it needs ``need_gb`` per GPU
    (``studies.cost_model.strategy_need_gb``), or None: it fits within 90%, or LoRA / QLoRA train adapters only."""
    if model.lora or model.qlora or need_gb <= 0.9 * gpu_gb:
        return None
    how = f"ZeRO-3 over {processes} GPUs" if deepspeed else (f"DDP over {processes} GPUs" if processes > 1 else "one GPU")
    return (f"full fine-tuning of {model.name} ({n_parameters / 1e9:.2f}B parameters) with {how} needs about "
            f"{need_gb:.0f} GB per GPU (fp32 weights, gradients and AdamW states, then activations), more than 90% "
            f"of the {gpu_gb:.0f} GB each GPU has: launch with DeepSpeed ZeRO-3 (the scale's launch.deepspeed: "
            "configs/ds_zero3.json; `gplan train --deepspeed`) or train LoRA adapters (picd.model.lora)")


def refuse_data_parallel() -> None:
    """An HF Trainer started outside a launcher with several GPUs visible wraps the model in nn.DataParallel
    (no bf16 autocast, the batch multiplied by the GPU count, every logit gathered on GPU 0)."""
    import torch
    if launched_rank() is None and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        raise RuntimeError(f"{torch.cuda.device_count()} GPUs are visible to a training outside a launcher, which the "
                           "HF Trainer would wrap in nn.DataParallel; train through `gplan train` under torchrun (what "
                           "the notebooks and studies launch), or make one GPU visible (CUDA_VISIBLE_DEVICES=0)")


def describe(plan: LaunchPlan) -> str:
    """One line for a notebook: how this scale's trainings are launched here."""
    if plan.device == "cuda":
        where = f"over {plan.processes} GPU(s), one process each"
    elif plan.processes == 1:
        where = f"as one process on one CPU thread, {plan.at_once} side by side"
    else:
        where = (f"over {plan.processes} gloo processes on the CPU (an emulated {plan.processes}-GPU node), one thread "
                 f"each, {plan.at_once} launch(es) at a time")
    return f"each training is a launched `gplan train` ({plan.launcher}) {where}" + (
        f", DeepSpeed {Path(plan.deepspeed).name}" if plan.deepspeed else "")


def write_record(directory: Path, deepspeed: str | None) -> None:
    """launch.json in a run's folder (rank 0, when the run starts training)."""
    write_json(directory / "launch.json", record(deepspeed), indent=1)
