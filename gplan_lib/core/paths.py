"""Where the project keeps data, results and figures, and where the released GSISR rows are found."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: data/ (released and synthetic rows), the published results/ and figures/, and runs/: what every notebook
#: and study writes as it runs (executed notebooks, figures, results, predictions; ignored by git).
DATA, RESULTS, FIGURES, OUTPUTS = REPO / "data", REPO / "results", REPO / "figures", REPO / "runs"
DOCS = REPO / "docs"  # the longer pages the README links, and the executed notebooks `gplan publish` cleans
#: The user puts the released GSISR CSVs here (git-ignored), e.g. data/gsisr/test.csv.
GSISR_DIR = DATA / "gsisr"
#: Half of the released test rows, beside the checkout in development and CI (never committed).
SHARED_CALIBRATION = REPO.parent / "shared" / "gsisr" / "calibration.csv"


def released_csv() -> Path | None:
    """The released rows to explore or evaluate on, or None when none are present.

    Order: $GPLAN_GSISR, data/gsisr/test.csv, any other CSV in data/gsisr, then the development
    calibration file beside the checkout. ``GPLAN_GSISR=none`` runs as a user without them.
    """
    env = os.environ.get("GPLAN_GSISR")
    if env == "none":
        return None
    if env:
        if not Path(env).is_file():
            raise FileNotFoundError(f"GPLAN_GSISR={env} is not a file")
        return Path(env)
    candidates = [GSISR_DIR / "test.csv", *sorted(GSISR_DIR.glob("*.csv")), SHARED_CALIBRATION]
    return next((p for p in candidates if p.is_file()), None)

HOW_TO_GET_RELEASED = f"""No released GSISR rows found. To explore and evaluate on them:
  1. download data_process/dataset/test.csv from the paper's repository (alibaba/GPlan, commit d599c11, MIT);
  2. save it as {GSISR_DIR / 'test.csv'} (git-ignored: released rows are never committed),
     or point $GPLAN_GSISR at it.
The notebooks still run without it; the cells that need the released rows say so and skip."""


def skipped(what: str) -> str:
    """What a notebook cell prints instead of ``what`` when the released rows are absent."""
    return (f"Skipped: {what} needs the released GSISR rows, and none were found. Save the paper's "
            f"data_process/dataset/test.csv as {GSISR_DIR / 'test.csv'} (or point $GPLAN_GSISR at it) and rerun.")
