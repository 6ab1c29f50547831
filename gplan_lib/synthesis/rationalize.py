"""CoT augmentation of released rows: write the structured reasoning for a JSON-only label
(the step the released README leaves to its users), so released rows can train PICD too."""
from __future__ import annotations

from pathlib import Path

from ..core.data import load_rows, write_gsisr_csv
from .reasoning import explain


def rationalize_csv(src: str | Path, dst: str | Path, overwrite: bool = False) -> dict[str, int]:
    """Copy ``src`` to ``dst`` with reasoning added to every label that has none."""
    rows, out, added = load_rows(src), [], 0
    for row in rows:
        if row.thought is None:
            row = row.replace(raw_labels=explain(row, row.plan).label())
            added += 1
        out.append(row)
    write_gsisr_csv(out, dst, overwrite=overwrite)
    return {"rows": len(rows), "rationalized": added, "kept": len(rows) - added}
