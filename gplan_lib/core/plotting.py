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


def png_bytes(fig: Figure, dpi: int = 90) -> bytes:
    """A figure as PNG bytes, then closed: what a widget's ``Image`` shows. The explorers redraw into an image
    rather than an ``Output`` widget, so no cell output is captured or cleared from a callback."""
    import io

    import matplotlib.pyplot as plt
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()
