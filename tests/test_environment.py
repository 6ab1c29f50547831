"""The pinned environment: requirements.txt and environment.yml agree; the GPU packages are in both."""
from __future__ import annotations

import re
import tomllib

import yaml

from gplan_lib.core.paths import REPO

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$")


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-e"):
            continue
        m = PIN.match(line)
        assert m, f"not an exact pin: {line!r}"
        pins[m.group(1).lower()] = m.group(2)
    return pins


def test_environment_yml_matches_requirements():
    """Issue 19: a pip user's `--deepspeed` failed at import (deepspeed and bitsandbytes were only in
    environment.yml and pyproject extras); one pinned set now serves pip and conda alike."""
    req = _pins((REPO / "requirements.txt").read_text().splitlines())
    assert {"deepspeed", "bitsandbytes"} <= set(req)
    assert "optional-dependencies" not in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == req
    assert "python=3.11" in env["dependencies"]


def test_torch_is_pinned_to_the_cpu_wheel_version():
    assert _pins((REPO / "requirements.txt").read_text().splitlines())["torch"] == "2.13.0"
