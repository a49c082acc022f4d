"""Small file helpers used in several rooms: whole-or-nothing writes, csv rows, markdown tables."""
from __future__ import annotations

import csv
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def other_separator(columns: list[str]) -> str | None:
    """The separator a table read as one column seems to use instead (`;`, `|`, a tab), if any
    (pandas' index of rows that held more commas than the header does not count)."""
    columns = [c for c in columns if not c.startswith("__index_level_")]
    return next((sep for sep in ";|\t," if len(columns) == 1 and sep in columns[0]), None)


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


def write_beside_checkpoint(run_dir: Path, name: str, checkpoint: str | None, record: dict) -> None:
    """`record` as <run_dir>/<name> (json), for the checkpoint of that name: what was fitted after
    training (calibration, thresholds) for it; whole or not at all."""
    import json

    with written_whole(Path(run_dir) / name) as tmp:
        tmp.write_text(json.dumps({"checkpoint": Path(checkpoint).name if checkpoint else None,
                                   **record}, indent=1))


def read_beside_checkpoint(checkpoint: Path, name: str) -> dict | None:
    """The record <run>/<name> written for this checkpoint of the run (None: there is none)."""
    import json

    path = Path(checkpoint).resolve().parent.parent / name
    if not path.is_file():
        return None
    found = json.loads(path.read_text())
    return found if found.get("checkpoint") == Path(checkpoint).name else None


def utf16(path) -> bool:
    """Whether a file starts with a UTF-16 byte-order mark (Excel's "Unicode Text" export)."""
    with open(path, "rb") as f:
        return f.read(2) in (b"\xff\xfe", b"\xfe\xff")


def lines_of(f, encoding: str = "utf-8", name: str = "the file", kwargs_key: str = "read_kwargs"
             ) -> Iterator[str]:
    """The texts of a one-text-per-line file opened in binary (predict's input, a .txt
    data.unlabeled_file): lines end at \n (or \r\n) only; str.splitlines would also cut a text
    at \x1c, \x85 or \u2028, which real texts (tweets) hold, and shift every later prediction.
    Blank lines at the end are no texts; a byte-order mark (Notepad, Excel) is no text either.
    Bytes that are not `encoding` are one line naming `name` (never replaced: a wrong text)."""
    from bertlab.errors import DataError

    blank, utf8 = 0, encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    for i, raw in enumerate(f):
        if b"\x00" in raw:
            raise DataError(f"{name} is not a text file (line {i + 1} holds NUL bytes); give one "
                            f"text per line, or a table (.csv, .tsv, .jsonl, .json, .parquet)")
        try:
            line = raw.decode("utf-8-sig" if i == 0 and utf8 else encoding)
        except UnicodeDecodeError as e:
            raise DataError(f"{name} is not {encoding} text (line {i + 1}: {e.reason} at byte "
                            f"{e.start}); give its encoding: {kwargs_key}={{encoding: latin-1}} "
                            f"(or cp1252, ...)") from None
        except LookupError:
            raise DataError(f"{kwargs_key}.encoding={encoding!r} is not an encoding Python knows; "
                            f"e.g. utf-8, latin-1, cp1252") from None
        line = line.removesuffix("\n").removesuffix("\r")
        if not line.strip():
            blank += 1
            continue
        yield from [""] * blank  # blank lines inside the file are texts (refused as blank)
        blank = 0
        yield line
