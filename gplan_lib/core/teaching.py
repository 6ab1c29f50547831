"""The library on the notebook page: the code that implements an equation, shown beside it. The source is
read from the module when the cell runs, so the page cannot drift from the code that trains and scores."""
from __future__ import annotations

import inspect
from typing import Any

from IPython.display import Code


def source(*objects: Any) -> Code:
    """The source of each function or class, one highlighted block (JupyterLab renders it as code)."""
    return Code("\n\n".join(inspect.getsource(o).rstrip() for o in objects), language="python")
