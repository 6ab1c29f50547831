"""Training runs side by side on a CPU: one thread per run, one worker process per core.

Why one thread: a multi-threaded CPU matmul splits its sums by thread, so a run trained with 2 threads
differs in the last bits from the same run trained with 1, and a thousand optimizer steps turn that into
different weights and metrics. With one thread per run, a run's weights depend only on its config and
seed - not on the machine's core count, nor on how many runs train at once - and the notebooks, the
seed study and ``make run`` on any CPU reproduce the committed results. Runs in parallel processes use
the cores at least as well as one run on all of them (measured on 2 cores at the cpu scale: two
one-thread Direct-SFT runs step in 0.33 s each, one two-thread run in 0.20 s).

On a GPU, or under torchrun / accelerate, the runs train one after another in this process.
Written here because ``concurrent.futures`` schedules processes but knows neither job dependencies
(a DPO run needs its PICD base) nor thread settings that must hold before torch is imported.
"""
from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

#: Set in every worker before torch or tqdm is imported: one thread; per-run progress as printed
#: lines (``checkpoints.EpochLog``) instead of bars, which two processes would garble.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


@dataclass(frozen=True)
class Job:
    """One unit of work: ``fn(*args)`` (an importable function, so that it can run in a worker),
    named for progress and for ``after`` (the names of jobs that must finish first)."""

    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    after: tuple[str, ...] = field(default=())


def cpu_count() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def launched_rank() -> tuple[int, int] | None:
    """(rank, world size) of this process when torchrun / accelerate launched it among several, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world) if world > 1 else None


def process_state():
    """accelerate's ``PartialState`` as the Trainer sets it up (``cpu=True`` without a GPU). A bare
    ``PartialState()`` on a CPU under torchrun reports one process, so every rank took itself for rank 0:
    each deleted and rebuilt the run folder (one rank's `File exists`, exit 2, in CI and 1 launch in 40 here)."""
    import torch
    from accelerate import PartialState
    return PartialState(cpu=not torch.cuda.is_available())


def close_process_group() -> None:
    """At the end of a process that torchrun / accelerate launched among several: wait for every rank (rank 0
    saves the run last), then close the process group. A rank that exits with it open can abort in gloo's
    threads at interpreter exit ('terminate called without an active exception', SIGABRT; 1 launch of
    `gplan train` in 40 here; pytorch/pytorch#190489). In a single process both steps do nothing."""
    state = process_state()
    state.wait_for_everyone()
    state.destroy_process_group()


def side_by_side() -> bool:
    """Whether runs train in worker processes: on a CPU, outside torchrun / accelerate."""
    import torch
    return not torch.cuda.is_available() and launched_rank() is None


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread inside the block (CPU work that feeds training, e.g. DPO reference
    log-probs, so that its numbers match a worker's)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def training_threads() -> contextlib.AbstractContextManager:
    """How a run trains in this process: on one thread on a CPU (the same weights as in a worker),
    unchanged on a GPU or under torchrun / accelerate."""
    return one_thread() if side_by_side() else contextlib.nullcontext()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` in os.environ while worker processes are started (they copy it), restored after."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _init_worker() -> None:
    import torch
    torch.set_num_threads(1)


def _check(jobs: Sequence[Job]) -> None:
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique: {names}")
    for j in jobs:
        unknown = set(j.after) - set(names)
        if unknown:
            raise ValueError(f"job {j.name!r} waits for unknown jobs {sorted(unknown)}")


def run_jobs(jobs: Sequence[Job], workers: int | None = None, desc: str = "training") -> dict[str, Any]:
    """Run ``jobs`` (in the order given, as their ``after`` allows) and return ``{name: result}`` in that order.
    On a CPU they run ``workers`` at a time (default: one per core) in one-thread worker processes;
    elsewhere one after another here. A failed job stops the rest and raises, naming it."""
    from tqdm.auto import tqdm
    _check(jobs)
    if not jobs:
        return {}
    results: dict[str, Any] = {}
    bar = tqdm(total=len(jobs), desc=desc, unit="run")
    if not side_by_side():
        for j in jobs:
            if not set(j.after) <= results.keys():
                raise RuntimeError(f"job {j.name!r} is listed before {sorted(set(j.after) - results.keys())}, which it waits for")
            results[j.name] = j.fn(*j.args)
            bar.update()
        bar.close()
        return results
    n = max(1, min(workers or cpu_count(), len(jobs)))
    bar.set_description(f"{desc}: {len(jobs)} runs, {n} at a time, one thread each")
    pending, running = list(jobs), {}  # running: future -> (job, start time)
    import multiprocessing
    with _environment(WORKER_ENV), ProcessPoolExecutor(n, multiprocessing.get_context("spawn"),
                                                       initializer=_init_worker) as pool:
        try:
            while pending or running:
                for j in [j for j in pending if set(j.after) <= results.keys()][: n - len(running)]:
                    pending.remove(j)
                    running[pool.submit(j.fn, *j.args)] = (j, time.perf_counter())
                if not running:
                    raise RuntimeError(f"jobs {[j.name for j in pending]} wait for jobs that never ran")
                bar.set_postfix_str(", ".join(j.name for j, _ in running.values()))
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    j, start = running.pop(fut)
                    results[j.name] = _result(fut, j)
                    bar.update()
                    bar.write(f"{j.name}: done in {time.perf_counter() - start:.0f} s")
        except BaseException:
            _stop(pool)
            raise
    bar.close()
    return {j.name: results[j.name] for j in jobs}


def _stop(pool: ProcessPoolExecutor) -> None:
    """Leave now (a failed job, Ctrl-C, a notebook's interrupt, SIGTERM): cancel the queued jobs and terminate
    the running ones. ``shutdown`` alone lets running jobs go on training in the background, writing the
    run folders that a rerun trains again, and keeps the process alive until they finish. The workers are
    the executor's ``_processes``: ``terminate_workers`` is public only from Python 3.14."""
    workers = list((pool._processes or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in workers:
        p.terminate()
    for p in workers:
        p.join()


def _result(fut: Future, job: Job) -> Any:
    try:
        return fut.result()
    except Exception as e:
        raise RuntimeError(f"{job.name} failed in its worker process: {type(e).__name__}: {e}") from e
