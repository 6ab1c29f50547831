"""What produced a result: the CPU's vector ISA as torch uses it, the CPU model and the library versions. One-thread
training is bit-identical only on the same kernels, so a result records them (issue 23 of the project: an AVX2 and
an AVX-512 machine train different weights from the same seed)."""
from __future__ import annotations

import os
import platform
import re
import sys
from functools import cache
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor()


@cache
def provenance() -> dict[str, Any]:
    """The machine and libraries of this process (``torch.__config__.show()`` parsed for MKL and oneDNN)."""
    import torch
    import transformers
    built = torch.__config__.show()
    find = lambda pattern: (m.group(1).strip() if (m := re.search(pattern, built)) else None)
    return {"cpu": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"), "machine": platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
            "mkl": find(r"Math Kernel Library Version ([^\n]*?) for"), "onednn": find(r"MKL-DNN (v[\d.]+)")}
