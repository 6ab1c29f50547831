"""Named scales and where each run writes. Notebooks read ``scale`` from their papermill
``parameters`` cell (default: $GPLAN_SCALE, else ``cpu``; the test command sets ``ci``); sizes and hyperparameters live in
configs/scales.yaml, never in notebook code."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .paths import DATA, FIGURES, REPO, RESULTS

SCALES_FILE = REPO / "configs" / "scales.yaml"


@cache
def _scales() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(SCALES_FILE.read_text(encoding="utf-8"))


def scale_names() -> tuple[str, ...]:
    return tuple(_scales())


def load_scale(scale: str) -> dict[str, Any]:
    """The configuration of a named scale (an unknown name is an error listing the known ones)."""
    if scale not in _scales():
        raise ValueError(f"unknown scale {scale!r}; choose one of {scale_names()}")
    return _scales()[scale]


@dataclass(frozen=True)
class RunDirs:
    """Output folders of one scale: results/<scale>/, figures/<scale>/ and data/synth/<scale>/."""

    results: Path
    figures: Path
    data: Path


def run_dirs(scale: str) -> RunDirs:
    """Create and return the output folders of ``scale``."""
    load_scale(scale)
    dirs = RunDirs(RESULTS / scale, FIGURES / scale, DATA / "synth" / scale)
    for d in (dirs.results, dirs.figures, dirs.data):
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def stored_study(name: str, scale: str = "cpu") -> dict[str, Any] | None:
    """results/<scale>/<name>.json of a study that notebooks read but do not rerun (``seeds``,
    ``regimes``: the committed ones at cpu), or None after saying how to make it."""
    path = RESULTS / scale / f"{name}.json"
    if not path.is_file():
        print(f"No {name} study at {path}: `make {name} SCALE={scale}` writes it (about 1.5 h at the cpu scale).")
        return None
    return json.loads(path.read_text(encoding="utf-8"))
