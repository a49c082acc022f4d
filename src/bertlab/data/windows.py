"""data.long_text=windows: a text longer than max_length becomes overlapping windows of
max_length tokens (the tokenizer's own overflow with `stride` shared tokens), and its windows'
logits are pooled back into one prediction per document (mean or max). Used by the data module
(training and metrics) and by predict.py, so both window a text the same way. Pooling is
hand-written: a scatter over document ids, which neither torch nor transformers wraps."""
from __future__ import annotations

import torch

from bertlab.errors import ConfigError


def settings(long_text: str, window_stride: int | None, window_pool: str, max_length: int,
             tokenizer, pair: bool) -> dict | None:
    """{"stride", "pool"} for long_text=windows (None for truncate), checked against the model
    (the words themselves: checks.check_choices, before anything loads)."""
    if long_text == "truncate":
        if window_stride is not None:
            raise ConfigError(f"data.window_stride={window_stride} is for data.long_text=windows; "
                              f"set that too, or drop data.window_stride")
        return None
    if not tokenizer.is_fast:
        raise ConfigError(f"data.long_text=windows needs a fast tokenizer; {type(tokenizer).__name__} "
                          f"is not one (use data.long_text=truncate)")
    stride = max_length // 4 if window_stride is None else window_stride
    room = max_length - tokenizer.num_special_tokens_to_add(pair=pair)
    if isinstance(stride, bool) or not isinstance(stride, int) or not 0 <= stride < room:
        raise ConfigError(f"data.window_stride={stride!r} is not valid with max_length={max_length}: "
                          f"it is the tokens a window shares with the previous one, so use 0 to "
                          f"{room - 1}")
    return {"stride": stride, "pool": window_pool}


def encode(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int,
           stride: int) -> tuple[dict, int]:
    """(encodings with one row per window plus `doc` and `window`, documents cut short): texts
    are windowed whole. Pairs window their second text and keep
    the first whole while a quarter of max_length is left for the second; otherwise the pair is
    truncated into one window and counted as cut."""
    groups = {stride: list(range(len(texts)))}  # stride -> the rows windowed with it
    if pairs is not None:
        firsts = tokenizer(texts, add_special_tokens=False)["input_ids"]
        room = max_length - tokenizer.num_special_tokens_to_add(pair=True)
        groups = {}
        for i, first in enumerate(firsts):
            left = room - len(first)  # tokens of the second text one window holds
            fits = left >= max(room // 4, 1)  # (None: truncate the pair into one window)
            groups.setdefault(min(stride, (left - 1) // 2) if fits else None, []).append(i)
    cut = 0
    windows: list[list[dict]] = [[] for _ in texts]
    for group_stride, rows in groups.items():
        kw = (dict(truncation=True) if group_stride is None else dict(
            truncation="only_second" if pairs else True, stride=group_stride,
            return_overflowing_tokens=True))
        enc = tokenizer([texts[i] for i in rows], [pairs[i] for i in rows] if pairs else None,
                        max_length=max_length, **kw)
        owners = enc.pop("overflow_to_sample_mapping", range(len(rows)))
        for j, owner in enumerate(owners):
            windows[rows[owner]].append({k: enc[k][j] for k in enc})
        if group_stride is None:  # pairs truncated whole: those longer than a window lost tokens
            full = tokenizer([texts[i] for i in rows], [pairs[i] for i in rows])["input_ids"]
            cut += sum(len(ids) > max_length for ids in full)
    out: dict[str, list] = {k: [] for k in windows[0][0]} | {"doc": [], "window": []}
    for doc, parts in enumerate(windows):
        for w, part in enumerate(parts):
            for k, v in part.items():
                out[k].append(v)
            out["doc"].append(doc)
            out["window"].append(w)
    return out, cut


def pool(values: torch.Tensor, doc: torch.Tensor, how: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """(one row per document: the mean or max of its windows' rows, the document ids in order)."""
    docs, inverse = doc.unique(return_inverse=True)
    flat = values.float().reshape(len(values), -1)
    index = inverse.unsqueeze(1).expand_as(flat)
    pooled = torch.zeros(len(docs), flat.shape[1]).scatter_reduce(
        0, index, flat, reduce="mean" if how == "mean" else "amax", include_self=False)
    return pooled.reshape(len(docs), *values.shape[1:]), docs


def first_of_each(values: torch.Tensor, doc: torch.Tensor) -> torch.Tensor:
    """One row per document (in pool's order) of values that every window of a document shares
    (its labels)."""
    docs, inverse = doc.unique(return_inverse=True)
    out = torch.zeros((len(docs), *values.shape[1:]), dtype=values.dtype)
    return out.index_copy(0, inverse, values)
