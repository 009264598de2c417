"""Folders that appear only when complete (dataset folders, run folders)."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield a hidden staging folder beside `out`; on success it replaces `out`, on any
    failure (Ctrl-C included) it is removed, so no folder that looks complete is left."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    stage.rename(out)


@contextmanager
def rewritten_folder(out: Path, replaced: tuple[str, ...]) -> Iterator[Path]:
    """staged_folder for an existing folder `out` that a command rewrites in place: the
    stage starts with every item of `out` except the `replaced` names (hard links where
    the file system allows, copies otherwise); the caller writes those into the stage."""
    with staged_folder(out) as stage:
        for item in sorted(out.iterdir()):
            if item.name in replaced:
                continue
            if item.is_dir():
                shutil.copytree(item, stage / item.name, copy_function=_link_or_copy)
            else:
                _link_or_copy(str(item), str(stage / item.name))
        yield stage


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
