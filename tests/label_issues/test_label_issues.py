"""find_label_issues.py (bertlab/label_issues/) and training without, or relabelling, the rows it
lists (data/label_fixes.py)."""
from __future__ import annotations

import csv
import json
import random

import pytest

from bertlab.errors import BertlabError, ConfigError, DataError
from conftest import NEG, NOUNS, POS, sentences
from helpers import compose_tool

FLIP = {"positive": "negative", "negative": "positive"}


def plain_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label) rows that say their label in every word that matters: what sentence vectors
    separate at once, so that a flipped label stands out."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        label = ["negative", "positive"][i % 2]
        words = rnd.sample(POS if label == "positive" else NEG, 3)
        rows.append((f"{words[0]}, {words[1]} and {words[2]}: a {rnd.choice(NOUNS)}", label))
    return rows


def find(tmp_path, *overrides, out="issues"):
    from bertlab.label_issues.find import check, find_label_issues

    cfg = compose_tool("find_label_issues", "model=tiny", f"output_dir={tmp_path / out}", *overrides)
    check(cfg)
    find_label_issues(cfg)
    return tmp_path / out


def listed(out):
    with open(out / "label_issues.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """200 rows whose label follows the adjective, every tenth label flipped; and what
    find_label_issues.py made of them."""
    tmp = tmp_path_factory.mktemp("noisy")
    rows = plain_rows(200, seed=3)
    flips = set(random.Random(3).sample(range(200), 20))  # (unrelated to anything in the text)
    path = tmp / "noisy.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i, (text, label) in enumerate(rows):
            w.writerow([text, FLIP[label] if i in flips else label])
    out = find(tmp, "data=files", f"data.train_file={path}", "method=embeddings", "folds=4")
    return path, flips, rows, out


def test_flipped_labels_are_found_ranked_and_given_back_their_label(noisy):
    path, flips, rows, out = noisy
    found = listed(out)
    flagged = {int(r["row"]) for r in found}
    recall, precision = len(flagged & flips) / len(flips), len(flagged & flips) / max(1, len(flagged))
    assert recall >= 0.8 and precision >= 0.6, (recall, precision, sorted(flagged))
    assert [int(r["rank"]) for r in found] == list(range(1, len(found) + 1))
    for r in found:
        i = int(r["row"])
        assert r["text"] == rows[i][0]  # the row's place in its file, and its text
        assert r["given"] == (FLIP[rows[i][1]] if i in flips else rows[i][1])
        if i in flips:
            assert r["suggested"] == rows[i][1], r  # the label it had before the flip
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "finished" and record["rows"] == 200 and record["issues"] == len(found)
    summary = (out / "label_issues.md").read_text()
    assert f"{len(found)} of 200 training rows" in summary and "| negative | positive |" in summary
    assert (out / "label_issues.png").stat().st_size > 1000
    assert path.read_text().count("\n") == 201  # the data file is never written


def test_training_without_or_relabelling_the_listed_rows_is_counted(noisy, make_cfg):
    from bertlab.training.train import train

    path, flips, rows, out = noisy
    found = listed(out)
    base = ["data=files", f"data.train_file={path}", "data.val_size=0.2", "data.test_size=0"]
    cfg = make_cfg(*base, f"data.exclude_rows={out / 'label_issues.csv'}", "data.exclude_top=5",
                   run_dir=out.parent / "without")
    train(cfg)
    data = json.loads((out.parent / "without" / "metrics.json").read_text())["data"]
    assert data["excluded_rows"] == {"train": 5}
    assert sum(data["rows"].values()) == 200 - 5
    cfg = make_cfg(*base, f"data.relabel_rows={out / 'label_issues.csv'}", run_dir=out.parent / "relabelled")
    train(cfg)
    data = json.loads((out.parent / "relabelled" / "metrics.json").read_text())["data"]
    assert data["relabeled_rows"] == {"train": len(found)} and sum(data["rows"].values()) == 200


@pytest.mark.parametrize("method", ["embeddings", "finetune"])
def test_pairs_multilabel_and_windows_are_scored_one_row_per_document(tmp_path, files, method):
    tags = [[["a"], ["b"], ["a", "b"]][i % 3] for i in range(90)]
    path = files("tags.jsonl", 90, label=tags, second=["and then some more"] * 90)
    method = [f"method={method}", "max_epochs=1"]
    out = find(tmp_path, "data=files", f"data.train_file={path}", "data.text_pair_column=second",
               *method, "folds=2", out="pairs")
    record = json.loads((out / "metrics.json").read_text())
    assert record["rows"] == 90
    for r in listed(out):
        assert r["text_pair"] == "and then some more" and set(r["given"].split(";")) <= {"a", "b"}
    long = files("long.csv", 60, text=[" ".join(["word"] * 40) + f" {t}" for t, _ in sentences(60)])
    out = find(tmp_path, "data=files", f"data.train_file={long}", "data.long_text=windows",
               "max_length=16", *method, "folds=2", out="windows")
    assert json.loads((out / "metrics.json").read_text())["rows"] == 60  # documents, not windows


@pytest.mark.parametrize("overrides, error, words", [
    (["data.train_file={one}"], DataError, "holds one label in the training data"),
    (["data.train_file={few}"], ConfigError, "folds=5 is more than the 3 training rows of the smallest"),
    (["data=valence"], ConfigError, "holds numbers (a regression target)"),
    (["method=bogus"], ConfigError, "method=bogus is not valid; use embeddings or finetune"),
    (["folds=1"], ConfigError, "folds=1 is not valid; use a number of folds >= 2"),
    (["method=embeddings", "cv_run={root}"], ConfigError, "cv_run is read by method=finetune"),
    (["cv_run={root}"], ConfigError, "is not a finished cross-validation run"),
], ids=["one-class", "few-rows", "regression", "method", "folds", "cv_run-embeddings", "cv_run-not-cv"])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, overrides, error, words):
    one, few = tmp_path / "one.csv", tmp_path / "few.csv"
    one.write_text("text,label\n" + "".join(f"text number {i},pos\n" for i in range(40)))
    few.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in sentences(40))
                   + "".join(f"odd one {i},rare\n" for i in range(3)))
    args = [o.format(one=one, few=few, root=tmp_path) for o in overrides]
    with pytest.raises(BertlabError) as raised:
        find(tmp_path, *(["data=files"] if "data=valence" not in args else []), *args)
    assert isinstance(raised.value, error) and words in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_list_from_another_file_is_refused_before_training(noisy, make_cfg, tmp_path):
    from bertlab.training.train import train

    path, _, _, out = noisy
    other = tmp_path / "other.csv"
    other.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in sentences(200, seed=9)))
    cfg = make_cfg("data=files", f"data.train_file={other}", f"data.exclude_rows={out / 'label_issues.csv'}")
    with pytest.raises(DataError, match="it was made from another file, or the file changed since"):
        train(cfg)
    cfg = make_cfg("data=files", f"data.train_file={path}", "data.exclude_top=3", run_dir=tmp_path / "b")
    with pytest.raises(ConfigError, match="data.exclude_top=3 counts rows of data.exclude_rows"):
        train(cfg)


def test_finetune_scores_each_row_by_the_fold_that_held_it_out_and_reuses_a_cv_run(tmp_path, files):
    path = files("small.csv", 90)
    out = find(tmp_path, "data=files", f"data.train_file={path}", "folds=3",  # (the default method)
               "max_epochs=1", "data.max_val_rows=10", out="finetuned")
    record = json.loads((out / "metrics.json").read_text())
    assert record["method"] == "finetune" and record["rows"] == 90  # every row, each once...
    fold = json.loads((out / "cv" / "fold_0" / "metrics.json").read_text())
    assert fold["data"]["rows"]["validation"] == 10  # ...though each fold validated 10 of its 30
    cv = json.loads((out / "cv" / "metrics.json").read_text())
    assert cv["status"] == "finished" and len(cv["cv"]["runs"]) == 3  # a normal cv run folder
    again = find(tmp_path, "method=finetune", f"cv_run={out / 'cv'}", out="again")  # no training
    assert not (again / "cv").exists() and listed(again) == listed(out)
