"""The one way the notebooks' figures are finished and written (under runs/<scale>/figures/, see config.output_dirs)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # matplotlib stays out of imports that do not draw (the CLI, synthesis workers)
    from matplotlib.figure import Figure


def save_figure(fig: Figure, path: str | Path | None, dpi: int = 110) -> Figure:
    """Tighten the layout and, when ``path`` is given, write the figure there; returns it."""
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig
