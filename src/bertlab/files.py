"""Small file helpers used in several rooms: whole-or-nothing writes, csv rows, markdown tables."""
from __future__ import annotations

import csv
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def written_whole(path: Path, fsync: bool = False) -> Iterator[Path]:
    """A temporary sibling of `path` (file or folder) to write; renamed to `path` when the block
    ends, so a reader never sees half of it; removed if the block fails. The rename raises
    OSError if `path` became a non-empty folder meanwhile (another process finished first)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    remove(tmp)
    try:
        yield tmp
        if fsync and tmp.is_file():
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())  # on disk before the rename makes it the file
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def write_csv(path: Path, rows: list[dict]) -> None:
    """`rows` (dicts with the same keys) as a csv file with a header."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(header: list, rows: list[list]) -> list[str]:
    """The lines of a markdown table."""
    line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"  # noqa: E731
    return [line(header), "| " + " | ".join("---" for _ in header) + " |", *map(line, rows)]
