"""callbacks=soup (issue 39): the best checkpoints averaged into best.ckpt, greedily or
uniformly, with each one's validation score and the average's in metrics.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertlab.callbacks.soup import mean
from bertlab.training.train import train

# three validations (one per epoch), a validation split trusted to rank them
FAST = ["data.max_samples=160", "batch_size=16", "max_epochs=3", "budget.trust_val_rows=0",
        "callbacks=soup"]


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k].double(), b[k].double(), atol=1e-6)
                                        for k in a)


@pytest.mark.parametrize("method", ["greedy", "uniform"])
def test_best_ckpt_holds_the_average_of_the_checkpoints_that_went_in(make_cfg, method):
    cfg = make_cfg(*FAST, f"callbacks.soup.method={method}")
    train(cfg)
    run = Path(cfg.output_dir)
    m = json.loads((run / "metrics.json").read_text())
    soup = m["soup"]
    kept = soup["checkpoints"]
    assert soup["method"] == method and len(kept) == 3 and kept[0]["in"]
    vals = [c["val"] for c in kept]
    assert vals == sorted(vals, reverse=True)  # ranked best first (val/acc: higher is better)
    went_in = [weights(run / "checkpoints" / "top" / c["file"]) for c in kept if c["in"]]
    assert same(weights(run / "checkpoints" / "best.ckpt"), mean(went_in))
    if method == "uniform":
        assert all(c["in"] for c in kept)
    else:  # greedy: the average is never worse than the best one alone
        assert soup["val_of_average"] >= kept[0]["val"]
    assert (run / "checkpoints" / "best-single.ckpt").is_file() == (len(went_in) > 1)
    assert m["val/acc"] == pytest.approx(soup["val_of_average"], abs=1e-6)  # scored: the average


def test_a_validation_split_too_small_to_rank_by_leaves_the_soup_out(make_cfg):
    cfg = make_cfg(*FAST, "budget.trust_val_rows=200", "max_epochs=null")  # (the budget decides)
    train(cfg)
    m = json.loads(Path(cfg.output_dir, "metrics.json").read_text())
    assert "soup" not in m and m["budget"]["keep"] == "last"
