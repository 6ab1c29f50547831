"""Executed notebooks as a reader on a code host sees them: `gplan publish` copies the notebooks `make run` executed
into docs/notebooks/<scale>/, without what only a live kernel can show. Progress bars and their stderr lines are
dropped; an interactive widget becomes one line saying so (its figure, where it has one, is also drawn as a plain
figure in the notebook); the saved widget state (about 1 MB of bar snapshots) goes."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

WIDGET = "application/vnd.jupyter.widget-view+json"
PROGRESS_RE = re.compile(r"\d+%\||\bit/s\b|s/it\b")
WIDGET_NOTE = "[an interactive widget: open this notebook in JupyterLab and run it to use it]"


def _is_progress(output: dict[str, Any]) -> bool:
    if output.get("output_type") == "stream":
        return output.get("name") == "stderr" and bool(PROGRESS_RE.search("".join(output.get("text", ""))))
    text = "".join(output.get("data", {}).get("text/plain", ""))
    return WIDGET in output.get("data", {}) and (bool(PROGRESS_RE.search(text)) or text.startswith("HBox(children=(HTML"))


def clean(nb: dict[str, Any]) -> dict[str, Any]:
    """A copy of an executed notebook without progress output, widget state or papermill's per-cell timings."""
    out = copy.deepcopy(nb)
    out.get("metadata", {}).pop("widgets", None)
    for cell in out.get("cells", []):
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["id"] = "injected-parameters"  # papermill draws a new id each run: a rerun would change the file
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for o in cell.get("outputs", []):
            if _is_progress(o):
                continue
            if WIDGET in o.get("data", {}):
                o = {"output_type": "display_data", "metadata": {}, "data": {"text/plain": [WIDGET_NOTE]}}
            kept.append(o)
        cell["outputs"] = kept
    return out


def publish_notebooks(src: Path, dst: Path) -> list[Path]:
    """Clean each executed NN_*.ipynb of ``src`` into ``dst``; returns the files whose content changed."""
    from .files import atomic_write
    changed = []
    for f in sorted(src.glob("[0-9][0-9]_*.ipynb")):
        text = json.dumps(clean(json.loads(f.read_text(encoding="utf-8"))), indent=1, ensure_ascii=False) + "\n"
        target = dst / f.name
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            dst.mkdir(parents=True, exist_ok=True)
            atomic_write(target, text)
            changed.append(target)
    return changed
