"""Shared fixtures. Tests that need the released rows skip cleanly when ../shared is absent."""
from __future__ import annotations

import pytest
from helpers import FakeServer

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


@pytest.fixture
def server():
    servers = []

    def start(**kw):
        servers.append(FakeServer(**kw))
        return servers[-1]
    yield start
    for s in servers:
        s.close()
