"""Hostile data: every row is used or counted as dropped; what cannot be read is one clear line."""
from __future__ import annotations

import functools
import json
import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertlab.data.clean import cleaner
from bertlab.data.datamodule import TextDataModule
from bertlab.errors import DataError
from conftest import ROOT, sentences



@functools.cache
def tiny_tokenizer() -> str:
    """model=tiny's tokenizer, composed once (a compose per example was a third of this module)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=["model=tiny"]).model.tokenizer


def module(path, tmp_path, **kw):
    args = dict(source="files", train_file=str(path), tokenizer=tiny_tokenizer(),
                clean=["fix_text", "normalize_whitespace"], val_size=0.0, test_size=0.0,
                validation_file=str(path), max_length=16, cache_dir=str(tmp_path / "cache"))
    dm = TextDataModule(**{**args, **kw})
    dm.setup("fit")
    return dm


def rows_used(dm, split="train"):
    return len(dm.dataset[split])


texts = st.one_of(
    st.text(max_size=40),                                         # any unicode, blanks included
    st.text(alphabet="ab \x00\x07\t\n\r\"',;", max_size=20),       # NULs, controls, quotes
    st.sampled_from(["Ã©tÃ© trÃ¨s bien", "cafÃ©", "ok", "ok"]),     # mojibake and repeats
    st.text(alphabet="word ", min_size=200, max_size=400),        # longer than max_length
)
labels = st.one_of(st.sampled_from(["pos", "neg"]), st.none(), st.just(""))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.tuples(texts, labels), min_size=1, max_size=30))
def test_every_row_is_used_or_counted(rows, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("prop")
    path = tmp_path / "messy.jsonl"
    with open(path, "w") as f:
        for text, label in rows:
            f.write(json.dumps({"text": text, "label": label}) + "\n")
    clean = cleaner(["fix_text", "normalize_whitespace"])  # (fix_text drops control characters)
    kept = [y for t, y in rows if clean(t).strip("\x00\x07") and y]
    try:
        dm = module(path, tmp_path)
    except DataError as e:  # refused with one line: nothing usable left, or one class
        assert "\n" not in str(e)
        if "has no labels" in str(e):
            assert all(not y for _, y in rows)
        elif "empty after dropping" in str(e):
            assert not kept or all(not y for _, y in rows)
        else:
            assert "holds one label" in str(e) and len(set(kept)) == 1, str(e)
        return
    dropped = dm.report.get("dropped", {}).get("train", 0)
    assert rows_used(dm) + dropped == len(rows)
    texts_used = list(dm.texts("train"))
    assert all(t and "\x00" not in t for t in texts_used)
    assert all(n <= 16 for n in dm.dataset["train"]["length"])
    truncated = dm.report.get("truncated", {}).get("train", 0)
    assert truncated == sum(len(dm.tokenizer(t)["input_ids"]) > 16 for t in texts_used)
    repeats = len(texts_used) - len(set(texts_used))
    assert dm.report.get("duplicates", {}).get("train", 0) == repeats


def write_csv(path, rows):
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


def test_strict_refuses_what_is_otherwise_dropped(tmp_path):
    rows = sentences(20) + [("", "positive"), ("a row without a label", None)]
    path = write_csv(tmp_path / "t.csv", rows)
    dm = module(path, tmp_path)
    assert dm.report["dropped"] == {"train": 2, "validation": 2}
    with pytest.raises(DataError, match=r"2 of 22 rows have blank text or a missing/NaN label "
                                        r"\(the first is data row 21\); data.strict=true"):
        module(path, tmp_path, strict=True)


def test_nan_and_infinite_regression_targets_are_dropped_and_counted(tmp_path):
    rows = [(t, float(i)) for i, (t, _) in enumerate(sentences(20))]
    rows += [("not a number", math.nan), ("too big", math.inf)]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in rows))
    dm = module(path, tmp_path)
    assert dm.task == "regression" and dm.report["dropped"]["train"] == 2
    assert rows_used(dm) == 20


def test_integer_labels_with_empty_cells_stay_classes(tmp_path):
    """A csv's 0/1 column with an empty cell is stored as floats (1.0, None); it was read as a
    regression target. Whole numbers written as floats (1.0), with no gap, still mean regression."""
    rows = [(t, i % 2) for i, (t, _) in enumerate(sentences(20))]
    path = tmp_path / "gaps.csv"
    path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows) + "no label here,\n")
    dm = module(path, tmp_path)
    assert dm.task == "classification" and dm.labels == ["0", "1"]
    assert dm.report["dropped"]["train"] == 1 and rows_used(dm) == 20
    floats = tmp_path / "floats.csv"
    floats.write_text("text,label\n" + "".join(f"{t},{y}.0\n" for t, y in rows))
    assert module(floats, tmp_path).task == "regression"
    assert module(path, tmp_path, task="regression").task == "regression"  # data.task wins
    scored = module(path, tmp_path, train_file=None, validation_file=None, test_file=str(path),
                    labels=["0", "1"], task="classification")  # eval.py file=: a trained model's
    assert list(scored.dataset["test"]["labels"][:3]) == [0, 1, 0]


def test_duplicates_are_counted_and_optionally_dropped(tmp_path):
    rows = sentences(20)
    rows += [rows[0], rows[1], (rows[2][0], "negative" if rows[2][1] == "positive" else "positive")]
    path = write_csv(tmp_path / "t.csv", rows)
    kept = module(path, tmp_path)
    assert kept.report["duplicates"]["train"] == 3
    assert kept.report["duplicates_with_another_label"]["train"] == 1
    assert rows_used(kept) == 23
    dropped = module(path, tmp_path, drop_duplicates=True)
    assert rows_used(dropped) == 20


def test_validation_rows_seen_in_training_are_counted(tmp_path):
    train = write_csv(tmp_path / "t.csv", sentences(30))
    val = write_csv(tmp_path / "v.csv", sentences(30)[:4] + sentences(30, seed=9)[:6])
    dm = module(train, tmp_path, validation_file=str(val))
    seen = set(dm.texts("train"))
    assert dm.report["also_in_train"]["validation"] == sum(t in seen for t in dm.texts("validation"))
    assert dm.report["also_in_train"]["validation"] >= 4
    carved = write_csv(tmp_path / "c.csv", sentences(40) + sentences(40)[:20])  # 20 repeats
    dm = module(carved, tmp_path, validation_file=None, val_size=0.25)
    seen = set(dm.texts("train"))
    assert dm.report["also_in_train"]["validation"] == sum(t in seen for t in dm.texts("validation")) > 0


def test_nul_bytes_and_mojibake_are_cleaned_and_counted(tmp_path):
    path = tmp_path / "t.csv"
    body = "".join(f"{t},{y}\n" for t, y in sentences(10))
    path.write_bytes(b"text,label\n" + body.encode() + "caf\u00c3\u00a9 nul\x00 here,positive\n".encode())
    dm = module(path, tmp_path)
    assert dm.texts("train")[-1] == "café nul here"  # ftfy repaired it; the NUL is gone
    assert dm.report["cleaned"]["train"] == 1


def test_a_stray_quote_is_counted_or_refused(tmp_path):
    merged = tmp_path / "merged.csv"  # the quote swallows the next lines up to another quote
    merged.write_text('text,label\ngood one,pos\n"stray quote here,neg\nanother,pos\n"last" row,neg\n'
                      'fine,neg\n')
    dm = module(merged, tmp_path)
    assert dm.report["multiline_rows"]["train"] == 1 and rows_used(dm) == 3
    with pytest.raises(DataError, match="span several lines.*data.strict=true refuses them"):
        module(merged, tmp_path, strict=True)
    open_ended = tmp_path / "open.csv"  # the quote never closes
    open_ended.write_text('text,label\ngood one,pos\n"stray quote here,neg\nanother,pos\n')
    with pytest.raises(DataError, match=r"EOF inside string.*quoting: 3"):
        module(open_ended, tmp_path)


def test_a_tsv_has_no_quoting(tmp_path):
    """A tsv text that starts with a quote (GLUE's, SST-2's files have them) swallowed the next
    rows under csv quoting; tsv is read as it is written, unless data.read_kwargs says otherwise."""
    path = tmp_path / "t.tsv"
    rows = [('"quoted start of a text', "positive"), ("plain", "negative"), ('a "middle" one', "positive"),
            ("four", "negative")]
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    dm = module(path, tmp_path)
    assert list(dm.texts("train")) == [t for t, _ in rows] and "multiline_rows" not in dm.report
    assert rows_used(module(path, tmp_path, read_kwargs={"quoting": 0})) == 2  # csv quoting asked for


def test_mixed_label_types_become_class_names(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "label": [1, "pos"][i % 2]})
                              for i, (t, _) in enumerate(sentences(20))))
    dm = module(path, tmp_path)
    assert dm.labels == ["1", "pos"] and dm.report["mixed_label_types"]["train"] == 10


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_mixed_labels_count_the_rows_of_the_rarer_kind(tmp_path, suffix):
    rows = [(t, "1.5" if i % 10 == 3 else y) for i, (t, y) in enumerate(sentences(40))]
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        path.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in rows))
    else:
        path.write_text("\n".join(json.dumps({"text": t, "label": 1.5 if y == "1.5" else y})
                                  for t, y in rows))
    dm = module(path, tmp_path)
    assert dm.report["mixed_label_types"]["train"] == 4  # the four "1.5" rows, not all 40
    with pytest.raises(DataError, match=r"4 rows hold numbers \(e.g. '?1.5'?\).*strict=true refuses"):
        module(path, tmp_path, strict=True)


def test_numbers_in_the_text_column_are_text_and_one_class_is_one_line(tmp_path):
    numbers = write_csv(tmp_path / "codes.csv", [(1000 + i, ["a", "b"][i % 2]) for i in range(20)])
    dm = module(numbers, tmp_path)  # a column of numbers (product codes, ids) read as text
    assert list(dm.texts("train"))[:2] == ["1000", "1001"] and rows_used(dm) == 20
    one = write_csv(tmp_path / "one.csv", [(t, "positive") for t, _ in sentences(20)])
    with pytest.raises(DataError, match=r"holds one label in the training data \('positive'\); "
                                        r"classification needs at least two"):
        module(one, tmp_path)


def test_spaces_around_labels_are_removed_and_counted(tmp_path):
    """"pos " beside "pos" (a csv written as "text, label") was a class of its own."""
    rows = sentences(20)
    path = write_csv(tmp_path / "spaced.csv", rows[:10] + [(t, f" {y} ") for t, y in rows[10:]])
    dm = module(path, tmp_path)
    assert dm.labels == ["negative", "positive"] and dm.report["labels_stripped"]["train"] == 10
    tags = tmp_path / "tags.jsonl"  # multi-label lists too
    tags.write_text("\n".join(json.dumps({"text": t, "label": [y, " any"]}) for t, y in rows))
    assert module(tags, tmp_path).labels == ["any", "negative", "positive"]


def test_a_text_column_of_lists_is_one_line(tmp_path):
    """A json text column of lists once trained on their Python repr ("['a', 'b']")."""
    path = tmp_path / "lists.jsonl"
    path.write_text("\n".join(json.dumps({"text": [t, "x"], "label": y}) for t, y in sentences(20)))
    with pytest.raises(DataError, match=r"data.text_column='text' holds lists \(e.g. \['the .*not "
                                        r"text; give a column of strings"):
        module(path, tmp_path)


def test_a_regression_target_that_never_varies_is_one_line(tmp_path):
    path = write_csv(tmp_path / "flat.csv", [(t, 3.5) for t, _ in sentences(20)])
    with pytest.raises(DataError, match=r"holds one value in the training data \(3.5\); "
                                        r"regression needs targets that vary"):
        module(path, tmp_path)


def test_multilabel_over_a_column_of_strings_is_one_line(tmp_path):
    """data.task=multilabel over "pos"/"neg" strings once trained on their letters as labels."""
    path = write_csv(tmp_path / "words.csv", sentences(20))
    with pytest.raises(DataError, match=r"data.task=multilabel needs a list in each row of "
                                        r"data.label_column='label'.*the train data holds '"):
        module(path, tmp_path, task="multilabel")
    lists = tmp_path / "lists.jsonl"  # the documented form still works
    lists.write_text("\n".join(json.dumps({"text": t, "label": [y, "any"]}) for t, y in sentences(20)))
    assert module(lists, tmp_path, task="multilabel").labels == ["any", "negative", "positive"]


def test_a_utf16_file_is_read_by_its_byte_order_mark(tmp_path):
    """Excel's "Unicode Text" export: a UTF-16 tsv with a byte-order mark (was a UnicodeDecodeError
    whose hint, latin-1, would have read it as garbage)."""
    path = tmp_path / "excel.tsv"
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in sentences(10)),
                    encoding="utf-16")
    dm = module(path, tmp_path)
    assert dm.texts("train")[0] == sentences(10)[0][0] and dm.labels == ["negative", "positive"]


def test_a_file_that_is_not_utf8_is_one_line_with_the_fix(tmp_path):
    path = tmp_path / "latin.csv"
    body = "".join(f"{t},{y}\n" for t, y in sentences(10))
    path.write_bytes(b"text,label\n" + body.encode() + "café au lait,positive\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"UnicodeDecodeError.*data.read_kwargs=\{encoding: latin-1\}"):
        module(path, tmp_path)
    dm = module(path, tmp_path, read_kwargs={"encoding": "latin-1"})
    assert dm.texts("train")[-1] == "café au lait"


def test_labels_that_differ_only_in_case_are_named_in_a_warning(tmp_path, caplog):
    """"POS" beside "pos" stays two classes (only the file's author knows), but not silently."""
    rows = sentences(20)
    path = write_csv(tmp_path / "cased.csv", rows[:14] + [(t, y.upper()) for t, y in rows[14:]])
    dm = module(path, tmp_path)
    assert dm.labels == ["NEGATIVE", "POSITIVE", "negative", "positive"]
    assert "differ only in case ('NEGATIVE' and 'negative'; 'POSITIVE' and 'positive')" in caplog.text
    assert dm.report["case_twin_labels"]["train"] == 4
    with pytest.raises(DataError, match=r"differ only in case .*data.strict=true refuses them"):
        module(path, tmp_path, strict=True)
    assert "case_twin_labels" not in module(write_csv(tmp_path / "plain.csv", rows), tmp_path).report


def test_float_labels_with_few_whole_values_say_they_are_read_as_a_regression(tmp_path, caplog):
    """"0.0"/"1.0" (classes a spreadsheet wrote as floats) train a regression, as floats do, but
    the log says so and how to ask for classes; real-valued targets say nothing."""
    rows = sentences(20)
    floats = write_csv(tmp_path / "floats.csv", [(t, float(y == "positive")) for t, y in rows])
    assert module(floats, tmp_path).task.name == "regression"
    assert "floats holding 2 whole values (0, 1): read as a regression" in caplog.text
    assert module(floats, tmp_path, task="classification").labels == ["0.0", "1.0"]
    caplog.clear()
    scores = write_csv(tmp_path / "scores.csv", [(t, i / 7) for i, (t, _) in enumerate(rows)])
    assert module(scores, tmp_path).task.name == "regression" and "whole values" not in caplog.text


def test_a_blank_text_pair_drops_its_row_as_a_blank_text_does(tmp_path):
    """A pair task's row with no second text (NLI's hypothesis) once trained on the first alone."""
    rows = sentences(20)
    path = tmp_path / "pairs.csv"
    pd.DataFrame({"text": [t for t, _ in rows], "pair": [t if i % 5 else None
                                                         for i, (t, _) in enumerate(rows)],
                  "label": [y for _, y in rows]}).to_csv(path, index=False)
    dm = module(path, tmp_path, text_pair_column="pair")
    assert rows_used(dm) == 16 and dm.report["dropped"]["train"] == 4
    assert all(dm.texts("train", "text_pair"))
