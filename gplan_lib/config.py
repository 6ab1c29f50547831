"""Named scales and where each run writes. Notebooks read ``scale`` from their papermill
``parameters`` cell (default: $GPLAN_SCALE, else ``cpu``); nothing else is edited by hand."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .paths import FIGURES, RESULTS

#: ci: seconds, for the test command; cpu: the default run on 2 cores; full-*: GPUs, Qwen3 backbones.
SCALES = ("ci", "cpu", "full-1.7b", "full-4b")


def default_scale() -> str:
    """$GPLAN_SCALE if set (the test command sets ``ci``), else ``cpu``."""
    return os.environ.get("GPLAN_SCALE", "cpu")


@dataclass(frozen=True)
class RunDirs:
    """Output folders of one scale: results/<scale>/ and figures/<scale>/."""

    results: Path
    figures: Path


def run_dirs(scale: str) -> RunDirs:
    """Create and return the output folders of ``scale`` (an unknown name is an error)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {SCALES}")
    dirs = RunDirs(RESULTS / scale, FIGURES / scale)
    dirs.results.mkdir(parents=True, exist_ok=True)
    dirs.figures.mkdir(parents=True, exist_ok=True)
    return dirs
