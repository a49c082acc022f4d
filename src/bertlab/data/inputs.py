"""Texts without labels, read as training reads its files: predict.py's input (a .txt file, a
table in any format training reads, or stdin) and their one-line errors."""
from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from bertlab.errors import ConfigError, DataError
from bertlab.files import lines_of, other_separator, utf16

BATCH = 2048  # table rows read at once: memory stays flat on any input size


LINES = ".txt"  # one text per line; every other format is a table, read as training reads it


def input_format(source: str) -> str:
    """`lines` (stdin, .txt) or `table` (the suffixes training reads); else one line."""
    from bertlab.data.sources import FORMATS

    if source == "-":
        return "lines"
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"input={source} " + ("is a folder; give a file (or - for stdin)"
                                                if path.is_dir() else "does not exist"))
    suffix = path.suffix.lower()
    if suffix == LINES:
        return "lines"
    if suffix not in FORMATS:
        raise ConfigError(f"input={source}: cannot read {suffix or 'a file without a suffix'}; "
                          f"give .txt (one text per line), "
                          f"{', '.join(s for s in FORMATS if s != LINES)}, or - for stdin")
    return "table"


def text_rows(source: str, columns: list[str], read_kwargs: dict | None = None
              ) -> Iterator[tuple[str, str | None]]:
    """(text, second text or None) of each row: the lines of a .txt file or of stdin (`-`, read
    whole), or the `columns` of a table read by training's own reader (data/sources.py)."""
    read_kwargs = dict(read_kwargs or {})
    if input_format(source) == "lines":
        if len(columns) > 1:
            raise DataError(f"input={source} is one text per line, but this model reads text "
                            f"pairs: give a table (.csv, .tsv, .jsonl, .json, .parquet) with "
                            f"columns {columns[0]!r} and {columns[1]!r}")
        unknown = sorted(set(read_kwargs) - {"encoding"})
        if unknown:
            raise ConfigError(f"read_kwargs.{unknown[0]} does not apply to one text per line; "
                              f"there only read_kwargs.encoding does")
        encoding = read_kwargs.get("encoding", "utf-8")
        name = "stdin" if source == "-" else f"input={source}"
        if source == "-":
            yield from ((t, None) for t in lines_of(sys.stdin.buffer, encoding, name))
            return
        path = Path(source)
        with as_utf8(path, utf16(path) and "encoding" not in read_kwargs) as f:
            yield from ((t, None) for t in lines_of(f, encoding, name))
        return
    table = read_table(source, columns, read_kwargs)
    for batch in table.iter(batch_size=BATCH):
        values = [[field(v, c, source) for v in batch[c]] for c in columns]
        yield from zip(values[0], values[1] if len(values) > 1 else [None] * len(values[0]))


def read_table(source: str, columns: list[str], read_kwargs: dict):
    """The table `source` (a datasets.Dataset), read by training's reader; its columns checked."""
    import datasets

    from bertlab.data.sources import multiline_rows, read_files

    datasets.disable_progress_bars()
    files = {"input": source}
    table = read_files(files, None, read_kwargs, keys={"input": "input"},
                       kwargs_key="read_kwargs")
    spanning = multiline_rows(files, table, None).get("input")
    if spanning:  # legal in csv, but a quote left open makes one text of many lines
        print(f"warning: {spanning} text(s) of input={source} span several lines (quoted "
              f"line breaks, or a quote left open); each is predicted as one text",
              file=sys.stderr)
    table = table["input"]
    for key, column in zip(("text_column", "text_pair_column"), columns):
        if column not in table.column_names:
            names = table.column_names
            sep = other_separator(names)
            hint = (f"; separated by {sep!r}? set read_kwargs={{sep: {sep!r}}}" if sep else "")
            raise DataError(f"{key}={column!r} is not a column of {source}; its columns are: "
                            f"{', '.join(names) or '(none)'}{hint}")
    return table


def as_utf8(path: Path, wide: bool):
    """The file's bytes, opened; a UTF-16 (`wide`) file decoded whole and given as UTF-8."""
    return io.BytesIO(path.read_bytes().decode("utf-16").encode()) if wide else open(path, "rb")


def field(value, column: str, source: str) -> str:
    """A table cell as the text to predict ('' for a missing one: refused as blank)."""
    if isinstance(value, (list, dict)):  # (its repr would be predicted)
        raise DataError(f"column {column!r} of {source} holds a {type(value).__name__} "
                        f"({str(value)[:60]}), not text; give a column of strings")
    return "" if value is None else str(value)


def count_texts(rows: Iterable[tuple[str, str | None]], source: str) -> int:
    """The number of rows, read through once; blank texts refused (every row gets a prediction)."""
    n, blank, first = 0, 0, None
    for n, row in enumerate(rows, 1):
        if any(t is not None and not t.strip() for t in row):
            blank += 1
            first = first or n
    if not n:
        raise DataError(f"input={'stdin' if source == '-' else source} holds no texts")
    if blank:
        raise DataError(f"input={'stdin' if source == '-' else source} has {blank} blank text(s), "
                        f"the first at row {first}; remove them (every row gets a prediction)")
    return n


def read_texts(source: str, columns: list[str], read_kwargs: dict | None = None) -> list[tuple]:
    """All rows of `source` (text_rows), checked as count_texts does."""
    rows = list(text_rows(source, columns, read_kwargs))
    count_texts(rows, source)
    return rows
