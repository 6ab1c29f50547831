"""Named scales, typed configs built from them, and where each notebook writes.

Notebooks read ``scale`` from their papermill ``parameters`` cell (default: $GPLAN_SCALE, else ``cpu``; the
test command sets ``ci``); sizes and hyperparameters live in configs/scales.yaml, never in notebook code.
Each stage declares its config as frozen dataclasses (``<stage>/config.py``, one documented field per
setting, defaults in the dataclass and nowhere else); ``build`` makes one from its YAML section, so an
unknown or misspelt key, a missing one or a value of the wrong type is an error naming the scale, the
section and the key.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from .files import atomic_write
from .paths import DATA, DOCS, FIGURES, OUTPUTS, REPO, RESULTS

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


class ConfigError(ValueError):
    """A scale's configuration does not fit its dataclass (the message names the key)."""


C = TypeVar("C")
_SCALARS = {int: (int,), float: (int, float), bool: (bool,), str: (str,), dict: (dict,), list: (list,)}


def _accepts(hint: Any, value: Any) -> bool:
    """Whether ``value`` fits the type hint (scalars, optionals, lists and dicts; anything else passes)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    base = origin or hint
    if base in _SCALARS:
        return isinstance(value, _SCALARS[base]) and not (base in (int, float) and isinstance(value, bool))
    return True


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass a hint names, directly or as ``X | None``."""
    if dataclasses.is_dataclass(hint):
        return hint
    return next((h for h in typing.get_args(hint) if dataclasses.is_dataclass(h)), None)


def build(cls: type[C], data: Mapping[str, Any] | None, where: str) -> C:
    """``cls`` from a YAML mapping: nested dataclasses built the same way, the dataclass's defaults for
    keys not given, and a ``ConfigError`` naming ``where`` and the key for anything unknown, missing or
    of the wrong type. The mapping as written is kept (``as_written``) for run keys."""
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{SCALES_FILE.name}: {where}: unknown key {', '.join(map(repr, unknown))}; "
                          f"known keys: {', '.join(sorted(fields))}")
    missing = [n for n, f in fields.items() if n not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{SCALES_FILE.name}: {where}: missing key {', '.join(map(repr, missing))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        sub = _dataclass_in(hints[name])
        if sub is not None and isinstance(value, Mapping):
            value = build(sub, value, f"{where}.{name}")
        elif not _accepts(hints[name], value):
            raise ConfigError(f"{SCALES_FILE.name}: {where}.{name}: {value!r} is not a {hints[name]}")
        kwargs[name] = value
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{SCALES_FILE.name}: {where}: {exc}") from None
    object.__setattr__(obj, "_written", data)
    return obj


def as_written(config: Any) -> dict[str, Any]:
    """The mapping a config was built from, as scales.yaml writes it (what run keys hash, so that a run
    trained before a default was added to the code stays valid); a config made in code: its fields."""
    return getattr(config, "_written", None) or dataclasses.asdict(config)


def replace(config: C, **changes: Any) -> C:
    """``dataclasses.replace`` that keeps ``as_written`` in step (the changed keys as if written so)."""
    obj = dataclasses.replace(config, **changes)
    object.__setattr__(obj, "_written", {**as_written(config), **changes})
    return obj


def section(scale: str, name: str) -> Mapping[str, Any]:
    """One stage's section of a scale (``synth``, ``picd``, ``sc_dpo``, ``evaluation``, ``regimes``, ``about``)."""
    cfg = load_scale(scale)
    if name not in cfg:
        raise ConfigError(f"{SCALES_FILE.name}: scale {scale!r} has no {name!r} section")
    return cfg[name]


class ScaleSection:
    """Mixin of a stage's top-level config: ``from_scale(scale)`` builds it from the scale's ``SECTION``."""

    SECTION: typing.ClassVar[str]

    @classmethod
    def from_scale(cls: type[C], scale: str) -> C:
        return build(cls, section(scale, cls.SECTION), f"{scale}.{cls.SECTION}")


@dataclass(frozen=True, kw_only=True)
class About:
    """What a scale is for, as every notebook announces it."""

    purpose: str                 # what the scale runs, in a phrase
    numbers: str                 # what its numbers can and cannot mean
    time: dict[str, str]         # per notebook ("00".."04"): what it costs


def announce(scale: str, notebook: str):
    """What the scale is for, what this notebook costs at it and what its numbers can mean (Markdown for
    the first cell's output); every scale's ``about`` entry in configs/scales.yaml."""
    from IPython.display import Markdown

    about = build(About, section(scale, "about"), f"{scale}.about")
    others = ", ".join(f"`{s}`" for s in scale_names() if s != scale)
    return Markdown(f"**Scale `{scale}`**: {about.purpose}. **This notebook**: about {about.time[notebook]}. "
                    f"**Its numbers**: {about.numbers}. (Other scales: {others}; set `scale` in the parameters "
                    f"cell or `GPLAN_SCALE` before starting JupyterLab.)")


@dataclass(frozen=True)
class OutputDirs:
    """Output folders of one scale: where results and figures go, and data/synth/<scale>/."""

    results: Path
    figures: Path
    data: Path


def output_dirs(scale: str) -> OutputDirs:
    """Create and return the folders a notebook writes at ``scale``: runs/<scale>/results/ and
    runs/<scale>/figures/ (ignored by git, so running a notebook never changes a committed file) and
    data/synth/<scale>/. `gplan publish` copies results and figures over the committed ones."""
    load_scale(scale)
    dirs = OutputDirs(OUTPUTS / scale / "results", OUTPUTS / scale / "figures", DATA / "synth" / scale)
    for d in (dirs.results, dirs.figures, dirs.data):
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def published_dirs(scale: str) -> OutputDirs:
    """The committed results/<scale>/ and figures/<scale>/ that the README shows: written by `gplan publish`
    and by the studies a user starts by name (`make seeds`, `make regimes`)."""
    load_scale(scale)
    dirs = OutputDirs(RESULTS / scale, FIGURES / scale, DATA / "synth" / scale)
    for d in (dirs.results, dirs.figures, dirs.data):
        d.mkdir(parents=True, exist_ok=True)
    return dirs


PUBLISHED = ("results", "figures", "notebooks")


def publish(scale: str, what: tuple[str, ...] = PUBLISHED) -> list[Path]:
    """Copy the results and figures of runs/<scale>/ over results/<scale>/ and figures/<scale>/, and the executed
    notebooks, cleaned (``core.notebooks``), into docs/notebooks/<scale>/ - those of ``what``; returns the files
    whose content changed (`git diff` then shows what a rerun moved)."""
    from .notebooks import publish_notebooks
    unknown = set(what) - set(PUBLISHED)
    if unknown:
        raise ValueError(f"cannot publish {sorted(unknown)}; choose from {PUBLISHED}")
    src, dst = output_dirs(scale), published_dirs(scale)
    changed = []
    for name, a, b in (("results", src.results, dst.results), ("figures", src.figures, dst.figures)):
        if name not in what:
            continue
        for f in sorted(a.iterdir()):
            target = b / f.name
            if f.is_file() and (not target.is_file() or target.read_bytes() != f.read_bytes()):
                atomic_write(target, f.read_bytes())
                changed.append(target)
    if "notebooks" in what:
        changed += publish_notebooks(OUTPUTS / scale, DOCS / "notebooks" / scale)
    return changed


def stored_study(name: str, scale: str = "cpu") -> dict[str, Any] | None:
    """results/<scale>/<name>.json of a study that notebooks read but do not rerun (``seeds``,
    ``regimes``: the committed ones at cpu), or None after saying how to make it."""
    path = RESULTS / scale / f"{name}.json"
    if not path.is_file():
        print(f"No {name} study at {path}: `make {name} SCALE={scale}` writes it (hours at the cpu scale; it runs "
              "in parts and resumes: docs/running.md).")
        return None
    return json.loads(path.read_text(encoding="utf-8"))
