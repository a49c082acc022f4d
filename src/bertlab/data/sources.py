"""Read raw splits from local files or the Hugging Face Hub into a `datasets.DatasetDict`."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from bertlab.errors import ConfigError, DataError, first_line
from bertlab.task import TASKS
from bertlab.files import utf16
from bertlab.hub import ensure_hub_or_offline

# file suffix -> `datasets` builder
FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json", ".jsonl": "json",
           ".parquet": "parquet"}
SOURCES = ("files", "hub")
SPLITS = ("train", "validation", "test")

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import datasets  # (imported where it reads: check_files runs before the heavy imports)


def file_format(path: str, fmt: str | None) -> str:
    if fmt:
        if fmt not in set(FORMATS.values()):
            raise ConfigError(f"data.format={fmt!r} is not supported; use one of csv, json, parquet")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"cannot tell the format of {path}: suffix {suffix!r} is not one of "
                        f"{', '.join(FORMATS)} (set data.format=csv|json|parquet)")
    return FORMATS[suffix]


def file_keys(files: dict[str, str], keys: dict[str, str] | None) -> dict[str, str]:
    """The key a user sets each file with: data.<split>_file, or a command's own (input=)."""
    return {split: (keys or {}).get(split, f"data.{split}_file") for split in files}


def check_files(files: dict[str, str], fmt: str | None, keys: dict[str, str] | None = None) -> dict:
    """The files exist and hold rows: each file's `datasets` builder, by its own suffix."""
    keys = file_keys(files, keys)
    for split, path in files.items():
        if not Path(path).is_file():
            raise ConfigError(f"{keys[split]}={path} " + (
                "is a folder; give a csv, tsv, json, jsonl or parquet file" if Path(path).is_dir()
                else "does not exist"))
    builders = {split: file_format(p, fmt) for split, p in files.items()}
    for split, path in files.items():
        if builders[split] != "parquet" and not has_rows(Path(path), builders[split]):
            raise DataError(f"{keys[split]}={path} holds no rows"
                            + (" (only a header)" if builders[split] == "csv" else "")
                            + "; give a file with data")
    return builders


def read_files(files: dict[str, str], fmt: str | None, read_kwargs: dict,
               keys: dict[str, str] | None = None, kwargs_key: str = "data.read_kwargs"
               ) -> datasets.DatasetDict:
    """One split per file, each read by its own suffix (a train.csv beside SST-2's test.tsv).
    A file may leave out columns the first has (a test file without labels: None there);
    other differences are one line naming each file's columns. `keys`/`kwargs_key`: how the
    user names the files and read_kwargs, for the messages (a command's own keys)."""
    import datasets

    builders = check_files(files, fmt, keys)
    keys = file_keys(files, keys)
    parts = {split: read_file(path, builders[split], read_kwargs, kwargs_key)
             for split, path in files.items()}
    first = next(iter(parts.values())).column_names
    if any(not set(ds.column_names) <= set(first) for ds in parts.values()):
        raise DataError("the data files' columns differ (" + "; ".join(
            f"{keys[split]}: {', '.join(ds.column_names)}" for split, ds in parts.items()) +
            "); give every file the same columns, or set data.text_column and "
            "data.label_column to ones they share")
    for split, ds in parts.items():
        for column in first:
            if column not in ds.column_names:
                ds = ds.add_column(column, [None] * len(ds))
        parts[split] = ds.select_columns(first)
    return datasets.DatasetDict(parts)


def read_file(path: str, builder: str, read_kwargs: dict, kwargs_key: str) -> datasets.Dataset:
    """One file as a `datasets.Dataset`: a .tsv by tabs without quoting (as GLUE's, SST-2's and
    SICK's are written), a UTF-16 file (a byte-order mark) as such, unless read_kwargs says."""
    import datasets

    kwargs = dict(read_kwargs)
    if builder == "csv" and "sep" not in kwargs and "delimiter" not in kwargs:
        if Path(path).suffix.lower() == ".tsv":
            kwargs["sep"] = "\t"  # and no quoting, as tsv has none: a text that starts
            kwargs.setdefault("quoting", 3)  # with " would swallow the next rows
    if builder == "csv" and "encoding" not in kwargs and utf16(path):
        kwargs["encoding"] = "utf-16"  # (its byte-order mark says so; utf-8 would fail on it)
    quiet = logging.getLogger(f"datasets.packaged_modules.{builder}.{builder}")
    level, quiet.level = quiet.level, logging.CRITICAL  # its ERROR line would repeat ours
    try:
        return datasets.load_dataset(builder, data_files={"rows": path}, **kwargs)["rows"]
    except Exception as e:  # pandas/pyarrow raise many types for unreadable files
        text = f"{type(e.__cause__ or e).__name__}: {e.__cause__ or e}"
        binary = b"\x00" in Path(path).read_bytes()[:4096] and not utf16(path)
        sep = header_separator(path, kwargs) if "Expected" in text else None
        hint = ("; it is not a text file (it holds NUL bytes): is it a " + builder +
                " file at all?" if binary and builder != "parquet" else
                f"; its header is separated by {sep!r}: set {kwargs_key}={{sep: {sep!r}}}"
                if sep else
                f"; a stray quote? {kwargs_key}={{quoting: 3}} reads quotes as plain text"
                if "inside string" in text else
                f"; not UTF-8: set {kwargs_key}={{encoding: latin-1}} (the fix_text cleaning "
                "step then repairs mojibake)" if "UnicodeDecodeError" in text else "")
        raise DataError(f"cannot read {path} as {builder}: {first_line(e)}{hint}") from e
    finally:
        quiet.setLevel(level)


def header_separator(path: str, kwargs: dict) -> str | None:
    """The separator the header line holds where the reader split by another (a ';' file whose
    texts hold commas fails on the first row with one: 'Expected 1 fields in line 33, saw 2')."""
    with open(path, "rb") as f:
        header = f.readline().decode(kwargs.get("encoding") or "utf-8", errors="replace")
    used = kwargs.get("sep") or kwargs.get("delimiter") or ","
    return next((sep for sep in (";", "|", "\t") if sep != used and sep in header
                 and used not in header), None)


def has_rows(path: Path, builder: str) -> bool:
    """A csv has a line after its header; a json(l) file has a record."""
    with open(path, "rb") as f:
        lines = (line for line in f if line.strip())
        first = next(lines, None)
        if builder == "csv":
            return next(lines, None) is not None
        return first is not None and first.strip() not in (b"[]", b"{}")


def multiline_rows(files: dict[str, str], dd: datasets.DatasetDict, fmt: str | None) -> dict:
    """Rows that took more than one line of a csv/tsv file (a stray quote merges rows silently)."""
    out = {}
    for split, path in files.items():
        if file_format(path, fmt) != "csv":
            continue
        with open(path, "rb") as f:
            lines = sum(1 for line in f if line.strip()) - 1  # minus the header
        rows = len(dd[split])
        if rows < lines:
            text = dd[split].column_names[0] if dd[split].column_names else None
            spanning = sum(any("\n" in str(v) for v in row.values()) for row in dd[split]) \
                if text else 0
            out[split] = max(spanning, 1)
    return out


def read_hub(path: str, name: str | None, read_kwargs: dict) -> datasets.DatasetDict:
    import datasets

    ensure_hub_or_offline()
    try:
        return datasets.load_dataset(path, name, **read_kwargs)
    except Exception as e:
        what = f"{path}/{name}" if name else path
        raise DataError(
            f"cannot load the Hub dataset {what!r} (the Hub is unreachable and it is not in the "
            f"local cache: {first_line(e)}); train offline on your own files with "
            f"data=files data.train_file=...") from e


def read(c: dict, report: dict) -> datasets.DatasetDict:
    """The raw splits that the data config `c` names (a hub data set, or local files); rows of
    a file that span several lines are counted in `report` (or refused under data.strict)."""
    import datasets

    from bertlab.data.hygiene import ROW, count

    if c["source"] == "hub":
        dd = read_hub(c["path"], c["name"], c["read_kwargs"])
        wanted = c["splits"] or {s: s for s in SPLITS}
        dd = datasets.DatasetDict({ours: dd[theirs] for ours, theirs in wanted.items()
                                   if theirs is not None and theirs in dd})
    else:
        files = {split: str(p) for split, p in c["files"].items() if p and split in SPLITS}
        dd = read_files(files, c["format"], c["read_kwargs"])
        for split, n in multiline_rows(files, dd, c["format"]).items():
            message = (f"{split}: {n} rows of {files[split]} span several lines: quoted fields with "
                       f"line breaks, or a stray quote that merged rows")
            if c["strict"]:
                raise DataError(f"{message}; data.strict=true refuses them")
            log.warning("%s; check them, or set data.strict=true to refuse such files", message)
            count(report, "multiline_rows", split, n)
    return datasets.DatasetDict({s: ds.add_column(ROW, range(len(ds))) for s, ds in dd.items()})


def check_train_file(source, train_file, labels, test_file) -> None:
    """A files source reads a training file (a run that only scores a test file names its labels)."""
    if source == "files" and not train_file and not (labels is not None and test_file):
        raise ConfigError("data.train_file is not set; give the path of a csv, tsv, json, jsonl "
                          "or parquet file (data=files data.train_file=my.csv)")


def check_arguments(source, task, train_file, test_file, labels, batch_size, max_length,
                    val_size, test_size, num_proc=None, max_val_rows=None) -> None:
    """What the data config must hold before anything is read."""
    if source not in SOURCES:
        raise ConfigError(f"data.source={source!r} is not valid; use one of {', '.join(SOURCES)}")
    if task is not None and task not in TASKS:
        raise ConfigError(f"data.task={task!r} is not valid; use one of {', '.join(TASKS)}")
    check_train_file(source, train_file, labels, test_file)
    for key, value in (("batch_size", batch_size), ("max_length", max_length)):
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{key}={value!r} is not valid; use a positive integer")
    for key, value, valid in (
            ("num_proc", num_proc, "processes, or null (one per core for 20,000 rows or more)"),
            ("max_val_rows", max_val_rows, "rows, or null (val_size alone decides)")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigError(f"data.{key}={value!r} is not valid; use a positive number of {valid}")
    for key, value in (("val_size", val_size), ("test_size", test_size)):
        if not 0 <= value < 1:
            raise ConfigError(f"data.{key}={value!r} is not valid; use a fraction in [0, 1)")
