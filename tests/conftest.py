"""Shared fixtures. Tests that need the released rows skip cleanly when ../shared is absent."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FakeServer, RawServer

from gplan_lib.core.data import GsisrRow, load_rows
from gplan_lib.core.paths import SHARED_CALIBRATION


@pytest.fixture(scope="session")
def calibration_path():
    if not SHARED_CALIBRATION.is_file():
        pytest.skip("../shared/gsisr/calibration.csv is not present (a user's fresh clone)")
    return SHARED_CALIBRATION


@pytest.fixture(scope="session")
def calibration_rows(calibration_path) -> list[GsisrRow]:
    return load_rows(calibration_path)


@pytest.fixture(scope="session")
def ci_dataset() -> Path:
    """data/synth/ci/ as `gplan synth --scale ci` writes it (the command line, as a user runs it; once per session)."""
    gplan = Path(sys.executable).parent / "gplan"
    subprocess.run([gplan, "synth", "--scale", "ci"], check=True, capture_output=True, timeout=300)
    from gplan_lib.core.config import output_dirs
    return output_dirs("ci").data


@pytest.fixture
def server():
    servers = []

    def start(**kw):
        servers.append(FakeServer(**kw))
        return servers[-1]
    yield start
    for s in servers:
        s.close()


@pytest.fixture
def raw():
    """Loopback servers answering each connection with the next scripted raw reply (``helpers.RawServer``)."""
    servers = []

    def start(*replies, trickle=0.0):
        servers.append(RawServer(list(replies), trickle))
        return servers[-1]
    yield start
    for s in servers:
        s.close()
