"""Work side by side on a CPU: launched trainings and one-thread worker processes, with job dependencies.

Why one thread: a multi-threaded CPU matmul splits its sums by thread, so a run trained with 2 threads
differs in the last bits from the same run trained with 1, and a thousand optimizer steps turn that into
different weights and metrics. With one thread per run, a run's weights depend on its config and seed and
the machine's kernels (the CPU's vector instruction set; README, reproducibility) - not on the core count,
nor on how many runs train at once. Runs in parallel processes use the cores at least as well as one run
on all of them (measured on 2 cores at the cpu scale: two one-thread Direct-SFT runs step in 0.33 s each,
one two-thread run in 0.20 s).

``run_jobs`` takes two kinds of job: a ``Launch`` (a training: ``gplan train`` started by ``training.launch``,
its output streamed here) and a ``Job`` (a Python function, e.g. scoring or a Table 1 baseline, run in a
one-thread worker process on a CPU). On a GPU, or inside a launched process group, they run one after
another. Written here because ``concurrent.futures`` schedules processes but knows neither job dependencies
(a DPO run needs its PICD base) nor commands whose output must reach a notebook cell as it is printed.
"""
from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from .launch import PROCESS_GROUP_TIMEOUT_S, Launch, command, cpu_count, describe, environment, launch_plan, launched_rank

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


def process_state():
    """accelerate's ``PartialState`` as the Trainer sets it up (``cpu=True`` without a GPU). A bare
    ``PartialState()`` on a CPU under torchrun reports one process, so every rank took itself for rank 0:
    each deleted and rebuilt the run folder (one rank's `File exists`, exit 2, in CI and 1 launch in 40 here)."""
    import datetime

    import torch
    from accelerate import PartialState
    return PartialState(cpu=not torch.cuda.is_available(), timeout=datetime.timedelta(seconds=PROCESS_GROUP_TIMEOUT_S))


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


def _check(jobs: Sequence[Job | Launch]) -> None:
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique: {names}")
    for j in jobs:
        unknown = set(j.after) - set(names)
        if unknown:
            raise ValueError(f"job {j.name!r} waits for unknown jobs {sorted(unknown)}")


class _Running:
    """A started launch: its process group and the last lines it printed (streamed as they come)."""

    def __init__(self, launch: Launch):
        plan = launch_plan(launch.scale)
        self.launch, self.cmd = launch, command(launch, plan)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **environment(plan)})
        self.tail: deque[str] = deque(maxlen=30)
        self._partial = b""

    def pump(self, data: bytes) -> None:
        """Print the complete lines of ``data`` (empty at the end of the output: the rest)."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop() if data else b""
        for raw in lines if data else [*lines, self._partial]:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if line:
                self.tail.append(line)
                print(line, flush=True)

    def finished(self) -> bool:
        if self.proc.poll() is None:
            return False
        self.pump(self.proc.stdout.read() or b"")
        self.pump(b"")
        return True

    def result(self) -> None:
        if self.proc.returncode != 0:
            tail = "\n".join(self.tail)
            raise RuntimeError(f"{self.launch.name} failed: `{' '.join(self.cmd[1:])}` exited with {self.proc.returncode}; "
                               f"its last lines:\n{tail}")

    def stop(self) -> None:
        """SIGTERM to the launch's process group (torchrun passes it to its ranks), SIGKILL after 10 s."""
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
                return


def _pump(running: Sequence[_Running], timeout: float) -> None:
    """Stream whatever the running launches print within ``timeout`` seconds."""
    with selectors.DefaultSelector() as sel:
        for r in running:
            sel.register(r.proc.stdout, selectors.EVENT_READ, r)
        for key, _ in sel.select(timeout):
            key.data.pump(os.read(key.fileobj.fileno(), 65536) or b"")


def _run_here(job: Job | Launch) -> Any:
    """One job in this process (a launch: started and waited for, its output streamed)."""
    if isinstance(job, Job):
        return job.fn(*job.args)
    run = _Running(job)
    try:
        while not run.finished():
            _pump([run], 0.5)
    except BaseException:
        run.stop()
        raise
    return run.result()


def run_jobs(jobs: Sequence[Job | Launch], workers: int | None = None, desc: str = "training") -> dict[str, Any]:
    """Run ``jobs`` (in the order given, as their ``after`` allows) and return ``{name: result}`` in that order
    (a launch's result is None: its run is read back from its folder). On a CPU they run side by side on
    ``workers`` cores (default: all): a function job takes one, a launch one per process. Elsewhere one after
    another here. A failed job stops the rest and raises, naming it."""
    from tqdm.auto import tqdm
    _check(jobs)
    if not jobs:
        return {}
    results: dict[str, Any] = {}
    launches = [j for j in jobs if isinstance(j, Launch)]
    if launches:
        print(f"{desc}: {describe(launch_plan(launches[0].scale))}", flush=True)
    bar = tqdm(total=len(jobs), desc=desc, unit="run")
    try:
        if side_by_side():
            _side_by_side(jobs, workers or cpu_count(), results, bar)
        else:
            for j in jobs:
                if not set(j.after) <= results.keys():
                    raise RuntimeError(f"job {j.name!r} is listed before {sorted(set(j.after) - results.keys())}, which it waits for")
                results[j.name] = _run_here(j)
                bar.update()
    finally:
        bar.close()
    return {j.name: results[j.name] for j in jobs}


def _side_by_side(jobs: Sequence[Job | Launch], slots: int, results: dict[str, Any], bar) -> None:
    pending, running = list(jobs), {}  # running: Future or _Running -> (job, start time, cores taken)
    n_functions = sum(isinstance(j, Job) for j in jobs)
    bar.set_description(f"{bar.desc}: {len(jobs)} runs on {slots} cores, one thread per process")
    pool: ProcessPoolExecutor | None = None
    try:
        with _environment(WORKER_ENV):
            while pending or running:
                for j in [j for j in pending if set(j.after) <= results.keys()]:
                    handle = None
                    if isinstance(j, Launch):
                        cost = launch_plan(j.scale).processes
                        if not running or sum(c for *_, c in running.values()) + cost <= slots:
                            handle = _Running(j)
                    elif sum(c for *_, c in running.values()) < slots:
                        import multiprocessing
                        cost = 1
                        pool = pool or ProcessPoolExecutor(min(slots, n_functions), multiprocessing.get_context("spawn"),
                                                           initializer=_init_worker)
                        handle = pool.submit(j.fn, *j.args)
                    if handle is not None:
                        pending.remove(j)
                        running[handle] = (j, time.perf_counter(), cost)
                if not running:
                    raise RuntimeError(f"jobs {[j.name for j in pending]} wait for jobs that never ran")
                bar.set_postfix_str(", ".join(j.name for j, *_ in running.values()))
                for handle in _wait(list(running)):
                    j, start, _ = running.pop(handle)
                    results[j.name] = handle.result() if isinstance(handle, _Running) else _result(handle, j)
                    bar.update()
                    bar.write(f"{j.name}: done in {time.perf_counter() - start:.0f} s")
    except BaseException:
        for handle in running:
            if isinstance(handle, _Running):
                handle.stop()
        if pool is not None:
            _stop(pool)
        raise
    if pool is not None:
        pool.shutdown()


def _wait(handles: Sequence[Future | _Running]) -> list[Future | _Running]:
    """The handles that finished, waiting for at least one; launches' output is streamed meanwhile."""
    from concurrent.futures import FIRST_COMPLETED, wait
    while True:
        done = [h for h in handles if (h.finished() if isinstance(h, _Running) else h.done())]
        if done:
            return done
        launches = [h for h in handles if isinstance(h, _Running)]
        if launches:
            _pump(launches, 0.2)
        else:
            wait(handles, return_when=FIRST_COMPLETED)


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
