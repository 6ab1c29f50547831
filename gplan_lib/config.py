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

from .paths import DATA, FIGURES, REPO, RESULTS, RUNS

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


def announce(scale: str, notebook: str):
    """What the scale is for, what this notebook costs at it and what its numbers can mean (Markdown for
    the first cell's output); every scale's ``about`` entry in configs/scales.yaml."""
    from IPython.display import Markdown

    about = load_scale(scale)["about"]
    others = ", ".join(f"`{s}`" for s in scale_names() if s != scale)
    return Markdown(f"**Scale `{scale}`**: {about['purpose']}. **This notebook**: about {about['time'][notebook]}. "
                    f"**Its numbers**: {about['numbers']}. (Other scales: {others}; set `scale` in the parameters "
                    f"cell or `GPLAN_SCALE` before starting JupyterLab.)")


@dataclass(frozen=True)
class RunDirs:
    """Output folders of one scale: where results and figures go, and data/synth/<scale>/."""

    results: Path
    figures: Path
    data: Path


def run_dirs(scale: str) -> RunDirs:
    """Create and return the folders a notebook writes at ``scale``: runs/<scale>/results/ and
    runs/<scale>/figures/ (ignored by git, so running a notebook never changes a committed file) and
    data/synth/<scale>/. `gplan publish` copies results and figures over the committed ones."""
    load_scale(scale)
    dirs = RunDirs(RUNS / scale / "results", RUNS / scale / "figures", DATA / "synth" / scale)
    for d in (dirs.results, dirs.figures, dirs.data):
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def published_dirs(scale: str) -> RunDirs:
    """The committed results/<scale>/ and figures/<scale>/ that the README shows: written by `gplan publish`
    and by the studies a user starts by name (`make seeds`, `make regimes`)."""
    load_scale(scale)
    dirs = RunDirs(RESULTS / scale, FIGURES / scale, DATA / "synth" / scale)
    for d in (dirs.results, dirs.figures, dirs.data):
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def publish(scale: str) -> list[Path]:
    """Copy the results and figures of runs/<scale>/ over results/<scale>/ and figures/<scale>/; returns
    the files whose content changed (`git diff` then shows what a rerun moved)."""
    src, dst = run_dirs(scale), published_dirs(scale)
    changed = []
    for a, b in ((src.results, dst.results), (src.figures, dst.figures)):
        for f in sorted(a.iterdir()):
            target = b / f.name
            if f.is_file() and (not target.is_file() or target.read_bytes() != f.read_bytes()):
                target.write_bytes(f.read_bytes())
                changed.append(target)
    return changed


def stored_study(name: str, scale: str = "cpu") -> dict[str, Any] | None:
    """results/<scale>/<name>.json of a study that notebooks read but do not rerun (``seeds``,
    ``regimes``: the committed ones at cpu), or None after saying how to make it."""
    path = RESULTS / scale / f"{name}.json"
    if not path.is_file():
        print(f"No {name} study at {path}: `make {name} SCALE={scale}` writes it (about 1.5 h at the cpu scale).")
        return None
    return json.loads(path.read_text(encoding="utf-8"))
