"""The data pipeline: every source kind, task guessing, splits, label maps, cache, cleaning."""
from __future__ import annotations

import os
from collections import Counter

import pytest
import torch
from hydra.utils import instantiate

from bertlab.data.clean import cleaner
from bertlab.data.sampler import EpochSampler, length_grouped
from bertlab.errors import BertlabError, ConfigError, user_error
from conftest import sentences


def datamodule(cfg):
    dm = instantiate(cfg.data, tokenizer=cfg.model.tokenizer, max_length=cfg.max_length,
                     batch_size=cfg.batch_size, seed=cfg.seed)
    dm.setup("fit")
    return dm


def test_tweets_corpus_offline(make_cfg):
    dm = datamodule(make_cfg("data.max_samples=400"))
    assert dm.task == "classification"
    assert dm.labels == ["negative", "neutral", "positive"]
    assert [len(dm.dataset[s]) for s in ("train", "validation", "test")] == [320, 40, 40]
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}  # (single texts: no segment ids)
    assert batch["input_ids"].shape[0] == 32


def test_the_carved_validation_split_stops_at_max_val_rows(make_cfg):
    """10% of 400 rows is 40; a cap of 25 moves the other 15 into training (and is in the cache
    key: the uncapped build's cache is not reused); still stratified; the test split is not capped."""
    sizes = lambda dm: [len(dm.dataset[s]) for s in ("train", "validation", "test")]  # noqa: E731
    assert sizes(datamodule(make_cfg("data.max_samples=400", "data.max_val_rows=null"))) == [320, 40, 40]
    capped = datamodule(make_cfg("data.max_samples=400", "data.max_val_rows=25"))
    assert sizes(capped) == [335, 25, 40]
    val, train = (Counter(capped.dataset[s]["labels"]) for s in ("validation", "train"))
    assert all(abs(val[k] / 25 - train[k] / 335) < 1 / 25 for k in train)  # still stratified


def test_tweets_test_split_is_stratified(make_cfg):
    dm = datamodule(make_cfg("data.max_samples=2000"))
    share = lambda s: Counter(dm.dataset[s]["labels"])  # noqa: E731
    train, test = share("train"), share("test")
    for label in range(3):
        assert abs(train[label] / 1600 - test[label] / 200) < 0.01


@pytest.mark.parametrize("seed", [0, 7])
def test_carved_splits_are_the_rows_datasets_train_test_split_gives(seed):
    import datasets

    from bertlab.data.labels import split_off

    labels = [i % 5 if i % 11 else 4 for i in range(997)]
    ds = datasets.Dataset.from_dict({"row": list(range(997)), "labels": labels}, features=datasets.Features(
        {"row": datasets.Value("int64"), "labels": datasets.ClassLabel(num_classes=5)}))
    rest, carved = split_off(ds, 101, seed, "labels")
    theirs = ds.train_test_split(test_size=101, seed=seed, stratify_by_column="labels")
    assert rest["row"][:] == theirs["train"]["row"][:] and carved["row"][:] == theirs["test"]["row"][:]


def test_a_class_of_one_row_cannot_be_carved(make_cfg, files):
    path = files("t.csv", 40, label=["positive", "negative"] * 19 + ["positive", "meh"])
    msg = error_of(make_cfg, "data=files", f"data.train_file={path}")
    assert "class 'meh' has 1 row; a stratified split needs 2 or more of each" in msg
    assert "give data.test_file or more data" in msg and "\n" not in msg


def test_valence_lexicon_is_regression(make_cfg):
    dm = datamodule(make_cfg("data=valence", "data.max_samples=300"))
    assert dm.task == "regression" and dm.num_labels == 1
    values = list(dm.dataset["train"]["labels"])
    assert all(-4 <= v <= 4 for v in values) and len(set(values)) > 20


@pytest.mark.parametrize("name", ["train.csv", "train.tsv", "train.json", "train.jsonl",
                                  "train.parquet"])
def test_each_file_format(make_cfg, files, name):
    path = files(name)
    dm = datamodule(make_cfg("data=files", f"data.train_file={path}"))
    assert dm.task == "classification" and dm.labels == ["negative", "positive"]
    assert sum(len(d) for d in dm.dataset.values()) == 120


def test_given_splits_are_used_as_given(make_cfg, files):
    cfg = make_cfg("data=files", f"data.train_file={files('a.csv', 80)}",
                   f"data.validation_file={files('b.csv', 30, seed=1)}",
                   f"data.test_file={files('c.csv', 20, seed=2)}")
    dm = datamodule(cfg)
    assert {s: len(d) for s, d in dm.dataset.items()} == {"train": 80, "validation": 30, "test": 20}


def test_integer_labels_sort_as_numbers(make_cfg, files):
    path = files("t.csv", 90, label=[[2, 10, 1][i % 3] for i in range(90)])
    dm = datamodule(make_cfg("data=files", f"data.train_file={path}"))
    assert dm.labels == ["1", "2", "10"]


def test_float_labels_mean_regression_and_task_overrides(make_cfg, files):
    path = files("t.csv", 90, label=[float(i % 3) for i in range(90)])
    assert datamodule(make_cfg("data=files", f"data.train_file={path}")).task == "regression"
    dm = datamodule(make_cfg("data=files", f"data.train_file={path}",
                             "data.task=classification"))
    assert dm.task == "classification" and dm.labels == ["0.0", "1.0", "2.0"]


def test_list_labels_mean_multilabel(make_cfg, files):
    tags = [[["a"], ["b"], ["a", "c"]][i % 3] for i in range(90)]
    path = files("t.jsonl", 90, label=tags)
    dm = datamodule(make_cfg("data=files", f"data.train_file={path}"))
    assert dm.task == "multilabel" and dm.labels == ["a", "b", "c"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["labels"].shape[1] == 3 and set(batch["labels"].flatten().tolist()) <= {0.0, 1.0}


def test_text_pairs_get_segment_ids(make_cfg, files):
    path = files("pairs.csv", 60, hypothesis=["a second sentence"] * 60)
    dm = datamodule(make_cfg("data=files", f"data.train_file={path}",
                             "data.text_pair_column=hypothesis"))
    batch = next(iter(dm.train_dataloader()))
    assert batch["token_type_ids"].max() == 1


@pytest.mark.parametrize("pair", [False, True])
def test_token_ids_are_the_tokenizers_own_with_truncation(make_cfg, files, pair):
    """The cache holds what tokenizer(text[, pair], truncation=True, max_length=...) gives."""
    rows = sentences(60, 3)
    path = files("t.csv", 60, text=[f"{t} {t} {t}" for t, _ in rows],
                 hypothesis=[t for t, _ in rows[::-1]])
    dm = datamodule(make_cfg("data=files", f"data.train_file={path}", "max_length=12",
                             *(["data.text_pair_column=hypothesis"] if pair else [])))
    texts, pairs = dm.texts("train"), dm.texts("train", "text_pair")
    theirs = dm.tokenizer(texts, pairs, truncation=True, max_length=12)
    ds = dm.dataset["train"]
    assert ds["input_ids"][:] == theirs["input_ids"]
    assert ds["length"][:] == [len(x) for x in theirs["input_ids"]]
    if pair:
        assert ds["token_type_ids"][:] == theirs["token_type_ids"]
    else:
        assert "token_type_ids" not in ds.column_names
    whole = dm.tokenizer(texts, pairs)["input_ids"]
    assert dm.report["truncated"]["train"] == sum(len(x) > 12 for x in whole) > 0


@pytest.mark.parametrize("before", [None, "false"])
def test_tokenizing_turns_the_rust_threads_on_and_back(make_cfg, monkeypatch, before):
    import datasets
    from tokenizers import Tokenizer

    from bertlab.data import tokens

    seen = []
    encode = Tokenizer.encode_batch_fast
    monkeypatch.setattr(Tokenizer, "encode_batch_fast", lambda self, texts: (
        seen.append(os.environ.get("TOKENIZERS_PARALLELISM")), encode(self, texts))[1], raising=False)
    if before is None:
        monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    else:
        monkeypatch.setenv("TOKENIZERS_PARALLELISM", before)
    dm = datamodule(make_cfg("data.max_samples=100"))
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": dm.texts("train")})})
    assert len(tokens.tokenize(dd, dm.tokenizer, 32, {})["train"]) == 80
    assert seen and set(seen) == {"true"}
    assert os.environ.get("TOKENIZERS_PARALLELISM") == before


def test_tokenization_is_cached_and_keyed(make_cfg, files, monkeypatch):
    from bertlab.data.datamodule import TextDataModule

    path = files("t.csv")
    datamodule(make_cfg("data=files", f"data.train_file={path}"))

    def fail(self):
        raise AssertionError("rebuilt despite a warm cache")

    monkeypatch.setattr(TextDataModule, "build", fail)
    datamodule(make_cfg("data=files", f"data.train_file={path}"))  # a hit: no build
    with pytest.raises(AssertionError, match="warm cache"):  # another max_length: a miss
        datamodule(make_cfg("data=files", f"data.train_file={path}", "max_length=16"))


def test_two_processes_clean_and_tokenize_as_one_does(make_cfg, tmp_path):
    """data.num_proc=2 (cleaning with ftfy and tokenizing in two processes) gives the rows,
    the counts and the tokens that one process gives, in the same order."""
    one = datamodule(make_cfg("data.max_samples=3000", "data.num_proc=1",
                              f"data.cache_dir={tmp_path / 'one'}"))
    two = datamodule(make_cfg("data.max_samples=3000", "data.num_proc=2",
                              f"data.cache_dir={tmp_path / 'two'}"))
    assert one.report == two.report and one.report.get("cleaned")
    for split in ("train", "validation", "test"):
        assert one.texts(split) == two.texts(split)
        for column in ("input_ids", "labels", "length"):
            assert one.dataset[split][column] == two.dataset[split][column], (split, column)


def test_batches_are_padded_per_batch_and_grouped_by_length(make_cfg, files):
    texts = [" ".join(["word"] * (3 + i % 40)) for i in range(200)]
    path = files("t.csv", 200, text=texts)
    dm = datamodule(make_cfg("data=files", f"data.train_file={path}", "batch_size=8"))
    widths = [b["input_ids"].shape[1] for b in dm.train_dataloader()]
    assert max(widths) > 2 * min(widths)  # padded to each batch's longest, not to max_length

    def mean_spread(dm):  # longest minus shortest row, averaged over batches
        lengths = [b["attention_mask"].sum(1) for b in dm.train_dataloader()]
        return sum(int(x.max() - x.min()) for x in lengths) / len(lengths)

    shuffled = datamodule(make_cfg("data=files", f"data.train_file={path}", "batch_size=8",
                                   "data.group_by_length=false"))
    assert mean_spread(dm) < mean_spread(shuffled) / 2  # grouped: rows of similar length
    assert any(w % 8 for w in widths)  # on a CPU, no padding beyond each batch's longest row
    eights = datamodule(make_cfg("data=files", f"data.train_file={path}", "batch_size=8",
                                 "data.pad_to_multiple_of=8"))
    padded = [b["input_ids"].shape[1] for b in eights.train_dataloader()]
    assert all(w % 8 == 0 for w in padded) and sorted(padded) == sorted(-(-w // 8) * 8 for w in widths)


def test_training_order_depends_only_on_seed_and_epoch(make_cfg, files):
    path = files("t.csv", 200, text=[" ".join(["word"] * (3 + i % 40)) for i in range(200)])
    dm = datamodule(make_cfg("data=files", f"data.train_file={path}", "batch_size=8"))
    loader = dm.train_dataloader()
    first = [b["input_ids"].tolist() for b in loader]
    loader.sampler.set_epoch(1)
    second = [b["input_ids"].tolist() for b in loader]
    assert first != second  # reshuffled each epoch
    again = datamodule(make_cfg("data=files", f"data.train_file={path}", "batch_size=8"))
    again.load_state_dict({"epoch": 1, "batches_done": 5})  # as a mid-epoch checkpoint says
    resumed = [b["input_ids"].tolist() for b in again.train_dataloader()]
    assert resumed[:len(second) - 5] == second[5:]  # (then the done ones, which Lightning's
    # batch count stops short of)


def test_under_ddp_each_process_gets_its_share_and_lightning_keeps_the_sampler():
    from torch.utils.data import DistributedSampler

    lengths = [3 + i % 40 for i in range(200)]
    whole = [EpochSampler(200, 0, 2 * 8, lengths, rank, 2) for rank in (0, 1)]
    assert all(isinstance(s, DistributedSampler) for s in whole)  # Lightning does not re-wrap it
    shares = [list(s) for s in whole]
    assert sorted(shares[0] + shares[1]) == list(range(200)) and len(whole[0]) == 100
    for rank in (0, 1):
        resumed = EpochSampler(200, 0, 2 * 8, lengths, rank, 2)
        resumed.skip = 3 * 2 * 8  # 3 steps of 8 rows on each of 2 processes done
        assert list(resumed)[:100 - 24] == shares[rank][24:]  # then the done ones



def test_cleaning_steps():
    clean = cleaner(["fix_text", "replace_urls", "replace_mentions", "normalize_whitespace"])
    assert clean("  @bob   look http://t.co/x  Ã©tÃ©\x00 ") == "@user look http été"
    assert cleaner(["strip_control", "normalize_whitespace"])("a\x00b") == "a b"
    with pytest.raises(ConfigError, match="unknown step 'shout'.*valid: fix_text"):
        cleaner(["shout"])


# ---- bad input: one clear error naming the value and what is valid -------------------------
def error_of(make_cfg, *overrides) -> str:
    with pytest.raises(Exception) as e:  # noqa: PT011 - Hydra may wrap it; user_error unwraps
        datamodule(make_cfg(*overrides))
    assert isinstance(user_error(e.value), BertlabError), e.value
    return str(user_error(e.value))


def test_missing_file(make_cfg, tmp_path):
    msg = error_of(make_cfg, "data=files", f"data.train_file={tmp_path}/nope.csv")
    assert "nope.csv does not exist" in msg


def test_unsupported_suffix(make_cfg, tmp_path):
    (tmp_path / "x.xlsx").write_text("a")
    msg = error_of(make_cfg, "data=files", f"data.train_file={tmp_path}/x.xlsx")
    assert "'.xlsx'" in msg and ".csv" in msg and "data.format" in msg


def test_unreadable_file(make_cfg, tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"this is not parquet")
    msg = error_of(make_cfg, "data=files", f"data.train_file={tmp_path}/x.parquet")
    assert msg.startswith("cannot read") and "x.parquet as parquet" in msg


def test_missing_column_lists_columns(make_cfg, files):
    msg = error_of(make_cfg, "data=files", f"data.train_file={files('t.csv')}",
                   "data.text_column=review")
    assert "data.text_column='review'" in msg and "columns are: text, label" in msg


def test_empty_after_blank_rows(make_cfg, files):
    path = files("t.csv", 20, text=["   "] * 20)
    assert "empty after dropping blank rows" in error_of(make_cfg, "data=files",
                                                         f"data.train_file={path}")


def test_unseen_label_in_validation(make_cfg, files):
    val = files("v.csv", 20, label=["positive"] * 19 + ["meh"])
    msg = error_of(make_cfg, "data=files", f"data.train_file={files('t.csv')}",
                   f"data.validation_file={val}")
    assert "label 'meh' in the validation data never occurs in training;" in msg
    assert "negative, positive" in msg
    val = files("v2.csv", 20, label=["positive"] * 19 + ["Negative"])
    msg = error_of(make_cfg, "data=files", f"data.train_file={files('t.csv')}",
                   f"data.validation_file={val}")
    assert "label 'Negative' in the validation data never occurs in training ('negative' " \
           "differs only in case); training labels: negative, positive" in msg


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_file_with_another_separator_is_named_with_its_read_kwargs(make_cfg, tmp_path, sep):
    path = tmp_path / "t.csv"
    path.write_text("\n".join([f"text{sep}label"] + [f"text {i}{sep}{'ab'[i % 2]}" for i in range(40)]))
    msg = error_of(make_cfg, "data=files", f"data.train_file={path}")
    assert msg.endswith(f"its columns are: text{sep}label; separated by {sep!r}? set "
                        f"data.read_kwargs={{sep: {sep!r}}}")
    one = tmp_path / "one.csv"
    one.write_text("sentence\n" + "\n".join(f"text {i}" for i in range(40)))
    assert "read_kwargs" not in error_of(make_cfg, "data=files", f"data.train_file={one}")
    # what the line says to type works
    datamodule(make_cfg("data=files", f"data.train_file={path}", f"data.read_kwargs={{sep: {sep!r}}}"))


def test_files_whose_columns_differ_are_one_line_naming_each_files_columns(make_cfg, files, tmp_path):
    """Once datasets' DatasetGenerationCastError ("An error occurred while generating the
    dataset"), or, for a test file without the label column, "empty after dropping rows"."""
    other = tmp_path / "other.csv"
    other.write_text("sentence\nfine\nbad\n")
    msg = error_of(make_cfg, "data=files", f"data.train_file={files('t.csv')}",
                   f"data.test_file={other}")
    assert "columns differ (data.train_file: text, label; data.test_file: sentence)" in msg
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nfine\nbad\n")
    msg = error_of(make_cfg, "data=files", f"data.train_file={files('t.csv')}",
                   f"data.test_file={texts}")
    assert "the test data has no labels: data.label_column='label' is empty in every row, or " \
           "not in its file" in msg


def test_bad_sizes(make_cfg, files):
    msg = error_of(make_cfg, "data=files", f"data.train_file={files('t.csv')}",
                   "data.val_size=1.5")
    assert "data.val_size=1.5" in msg
    msg = error_of(make_cfg, "data=files", f"data.train_file={files('t.csv')}", "data.max_val_rows=0")
    assert "data.max_val_rows=0 is not valid; use a positive number of rows" in msg
    msg = error_of(make_cfg, "data=files", f"data.train_file={files('t.csv')}", "data.num_proc=0")
    assert "data.num_proc=0 is not valid; use a positive number of processes" in msg


@pytest.mark.parametrize("data, name", [("sst2", "nyu-mll/glue/sst2"), ("stsb", "nyu-mll/glue/stsb"),
                                        ("imdb", "stanfordnlp/imdb"),
                                        ("ag_news", "fancyzhx/ag_news")])
def test_hub_dataset_offline_fails_clearly(make_cfg, monkeypatch, data, name):
    import datasets
    import huggingface_hub.constants

    from bertlab import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what go_offline sets, restored after the test
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    hub.hub_reachable.cache_clear()
    msg = error_of(make_cfg, f"data={data}")
    assert f"Hub dataset {name!r}" in msg and "data=files" in msg
    hub.hub_reachable.cache_clear()


def test_length_grouping_shuffles_whole_batches_of_similar_length():
    lengths = [3 + (i * 7919) % 60 for i in range(1000)]
    order = length_grouped(lengths, 32, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(1000))  # every row once
    batches = [order[i:i + 32] for i in range(0, 1000, 32)]
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert sum(spans) / len(spans) <= 2  # 60 lengths in 32 batches: each batch nearly one length
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # the longest batch first
    longest = [max(lengths[i] for i in b) for b in batches[1:]]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)  # shuffled
    again = length_grouped(lengths, 32, torch.Generator().manual_seed(0))
    other = length_grouped(lengths, 32, torch.Generator().manual_seed(1))
    assert again == order != other  # seeded


def test_length_grouping_under_ddp_gives_each_process_batches_of_similar_length():
    lengths = [3 + (i * 7919) % 60 for i in range(1000)]
    for rank in (0, 1):
        mine = list(EpochSampler(1000, 0, 2 * 32, lengths, rank, 2))
        batches = [mine[i:i + 32] for i in range(0, len(mine), 32)]
        spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
        assert sum(spans) / len(spans) <= 4  # 60 lengths in 16 groups of 64 rows


def test_each_file_is_read_by_its_own_suffix(make_cfg, files, tmp_path):
    """A training .csv beside SST-2's own test.tsv (tabs, no quoting, a text that opens with a
    quote) was refused: 'cannot read train.csv, test.tsv as csv: Expected 1 fields'."""
    test = tmp_path / "test.tsv"
    test.write_text("text\tlabel\n" + '"a quote that opens a text\tpositive\n'
                    + "".join(f"{t}\t{y}\n" for t, y in sentences(20, seed=5)))
    dm = datamodule(make_cfg("data=files", f"data.train_file={files('t.csv')}",
                             f"data.test_file={test}"))
    assert len(dm.dataset["test"]) == 21
    assert dm.texts("test")[0] == '"a quote that opens a text'


def test_a_semicolon_file_whose_texts_hold_commas_names_its_separator(make_cfg, tmp_path):
    """pandas stops at the first text with a comma ('Expected 1 fields in line 33, saw 2'); the
    line now names the header's separator and the setting that reads it, which then works."""
    path = tmp_path / "t.csv"
    rows = [f"text {i}{', too' if i == 31 else ''};{'ab'[i % 2]}" for i in range(40)]
    path.write_text("text;label\n" + "\n".join(rows) + "\n")
    msg = error_of(make_cfg, "data=files", f"data.train_file={path}")
    assert msg.endswith("its header is separated by ';': set data.read_kwargs={sep: ';'}"), msg
    dm = datamodule(make_cfg("data=files", f"data.train_file={path}", "data.read_kwargs={sep: ';'}"))
    assert sum(len(ds) for ds in dm.dataset.values()) == 40


def test_a_few_rows_of_each_class_still_carve_a_stratified_validation_split():
    """8 rows of each of 3 classes: 10% is 2 rows, too few to hold each class; the split takes 3
    (was: "cannot carve a 2-row validation split", the few-labels default command failing)."""
    import datasets

    from bertlab.data.labels import carve
    from bertlab.task import TASKS

    rows = {"text": [f"t{i}" for i in range(24)], "labels": [i % 3 for i in range(24)]}
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)})
    c = {"test_size": 0, "val_size": 0.1, "cv": None, "max_val_rows": 1000, "seed": 0}
    out = carve(dd, TASKS["classification"], c)
    assert sorted(out["validation"]["labels"]) == [0, 1, 2] and len(out["train"]) == 21


@pytest.mark.parametrize("task, trust, carved", [
    ("classification", 20, False),   # a 10-row split, under 20: its rows train
    ("classification", 10, True),    # 10 rows are trusted
    ("classification", 0, True),     # 0: always carved
    ("multilabel", 20, True),        # the thresholds are tuned on it
    ("regression", 20, False)])
def test_a_validation_split_too_small_to_choose_by_is_not_carved(task, trust, carved):
    import datasets

    from bertlab.data.labels import carve
    from bertlab.task import TASKS

    labels = {"classification": [i % 2 for i in range(100)], "regression": [i / 7 for i in range(100)],
              "multilabel": [[i % 2, 1 - i % 2] for i in range(100)]}[task]
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"text": [f"t{i}" for i in range(100)], "labels": labels})})
    report = {}
    c = {"test_size": 0.1, "val_size": 0.1, "cv": None, "max_val_rows": 1000, "seed": 0,
         "trust_val_rows": trust}
    out = carve(dd, TASKS[task], c, report)
    assert ("validation" in out) == carved and len(out["test"]) == 10  # (the test split is carved)
    assert len(out["train"]) == (80 if carved else 90)
    assert report == ({} if carved else {"validation": {"not_carved_rows": 10}})


def test_no_validation_split_at_all_is_still_refused():
    import datasets

    from bertlab.data.labels import carve
    from bertlab.task import TASKS

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"text": [f"t{i}" for i in range(20)], "labels": [i % 2 for i in range(20)]})})
    c = {"test_size": 0, "val_size": 0, "cv": None, "max_val_rows": 1000, "seed": 0,
         "trust_val_rows": 200}
    with pytest.raises(ConfigError, match="there is no validation split"):
        carve(dd, TASKS["classification"], c)


def test_a_cv_fold_over_max_val_rows_is_held_out_whole_and_validated_in_part():
    """A fold of 40 rows with max_val_rows=10: `heldout` keeps all 40 (what label issues score),
    `validation` 10 of them, stratified and seeded; training never sees a held-out row."""
    import datasets

    from bertlab.data.labels import HELD_OUT, carve
    from bertlab.task import TASKS

    rows = {"text": [f"t{i}" for i in range(120)], "labels": [i % 3 if i % 4 else 0 for i in range(120)]}
    c = {"test_size": 0, "val_size": 0.1, "cv": (3, 1), "max_val_rows": 10, "seed": 0}
    out = carve(datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}),
                TASKS["classification"], c)
    train, held, val = (set(out[s]["text"]) for s in ("train", HELD_OUT, "validation"))
    assert len(held) == 40 and len(val) == 10 and val < held and not train & held
    assert len(train | held) == 120
    share = lambda s: Counter(out[s]["labels"])  # noqa: E731
    assert all(abs(share("validation")[k] / 10 - share(HELD_OUT)[k] / 40) <= 1 / 10 for k in range(3))
    again = carve(datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}),
                  TASKS["classification"], c)
    assert again["validation"]["text"] == out["validation"]["text"]  # seeded
    uncapped = carve(datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)}),
                     TASKS["classification"], {**c, "max_val_rows": 40})
    assert HELD_OUT not in uncapped and len(uncapped["validation"]) == 40
