"""Files written whole or not at all, and one writer per output folder.

Every file the tools write goes through ``atomic_write``: the bytes go to a temporary file of its own in the
target's folder (a name no other writer shares), are flushed to disk, and are renamed over the target only
when complete - so a full disk, Ctrl-C or a crash leaves the previous file (or none), never a cut one, and two
threads writing one path never touch each other's temporary file. ``folder_lock`` refuses a second writer on
an output folder while the first runs (an advisory ``flock`` on the folder itself: no lock file is left, and
the kernel releases it if the holder dies).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

def atomic_write(path: str | Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed into place (see the module docstring)."""
    path = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def check_manifest(folder: str | Path, names: tuple[str, ...]) -> None:
    """The dataset files ``names`` of ``folder`` are the ones its manifest.json recorded (written by `gplan
    synth`): a changed, truncated or missing file is an error naming it, before anything trains on it."""
    folder = Path(folder)
    try:
        recorded = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["sha256"]
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder / 'manifest.json'}: missing, so {folder} is no complete dataset; rebuild it "
                                "with `gplan synth ... --overwrite`") from None
    except (ValueError, KeyError, TypeError, RecursionError):
        raise ValueError(f"{folder / 'manifest.json'}: unreadable; rebuild the dataset with `gplan synth ... "
                         "--overwrite`") from None
    for name in names:
        if not (folder / name).is_file() or sha256_file(folder / name) != recorded.get(name):
            raise ValueError(f"{folder / name}: not the file its manifest records (missing, changed or cut after "
                             "synthesis); rebuild the dataset with `gplan synth ... --overwrite`")


def write_json(path: str | Path, obj: Any, **dumps: Any) -> Path:
    """``obj`` as JSON (UTF-8, ``ensure_ascii=False`` unless told), written atomically."""
    return atomic_write(path, json.dumps(obj, **{"ensure_ascii": False, **dumps}))


def write_result(path: str | Path, obj: dict[str, Any], **dumps: Any) -> Path:
    """A published result (results/<scale>/*.json): ``obj`` with a ``provenance`` entry saying which CPU
    capability, CPU and library versions computed it (``core.provenance``), written as ``write_json`` does."""
    from .provenance import provenance
    return write_json(path, {**obj, "provenance": obj.get("provenance") or provenance()}, **dumps)


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str) -> Iterator[None]:
    """Hold ``folder``'s writer lock inside the block; a second holder is refused at once with an error naming
    the folder (``what``: the command, for the message)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileExistsError(f"{folder}: another {what} is writing this folder; wait for it to finish or choose "
                                  "another --out") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
