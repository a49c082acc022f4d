"""Which tokens drove a prediction: integrated gradients over the word embeddings (captum)."""
from __future__ import annotations

import html
from pathlib import Path

import torch
from captum.attr import LayerIntegratedGradients

from bertlab.data.clean import cleaner
from bertlab.data.tokens import encode_texts


def explain_texts(model, tokenizer, texts: list[str], targets: list[int | None],
                  n_steps: int = 32, pairs: list[str] | None = None) -> list[list[tuple[str, float]]]:
    """For each text (and its pair, for a model trained on pairs), (token, attribution) for
    every token, special tokens included.

    Attributions are towards `targets` (a class id; None for regression), against a baseline
    where every non-special token is [PAD]; each text's scores are scaled to unit L2 norm.
    """
    clean = cleaner(list(model.hparams.clean))
    lig = LayerIntegratedGradients(lambda ids, mask, types: model(ids, mask, types),
                                   model.net.get_input_embeddings())
    out = []
    for i, (text, target) in enumerate(zip(texts, targets)):
        pair = [clean(pairs[i])] if pairs else None
        enc = encode_texts(tokenizer, [clean(text)], pair, model.hparams.max_length)[0]
        ids = torch.tensor(enc["input_ids"])
        types = torch.tensor(enc["token_type_ids"]) if "token_type_ids" in enc else None
        special = torch.tensor(tokenizer.get_special_tokens_mask(enc["input_ids"][0],
                                                                 already_has_special_tokens=True))
        baseline = torch.where(special.bool(), ids, tokenizer.pad_token_id)
        attr = lig.attribute(ids, baselines=baseline, target=target,
                             additional_forward_args=(torch.ones_like(ids), types),
                             n_steps=n_steps, internal_batch_size=n_steps).sum(-1)[0]
        attr = attr / attr.norm().clamp(min=1e-12)
        tokens = tokenizer.convert_ids_to_tokens(ids[0])
        out.append([(t, round(float(a), 4)) for t, a in zip(tokens, attr)])
    return out


def top_tokens(scores: list[tuple[str, float]], tokenizer, k: int = 5) -> str:
    special = set(tokenizer.all_special_tokens)
    best = sorted((s for s in scores if s[0] not in special), key=lambda s: -s[1])[:k]
    return " ".join(f"{t}:{a:+.2f}" for t, a in best)


def write_html(path: Path, rows: list[dict], explanations, tokenizer) -> None:
    """One line per text; green tokens pushed towards the prediction, red ones away from it."""
    special = set(tokenizer.all_special_tokens)
    lines = []
    for row, scores in zip(rows, explanations):
        spans = []
        for token, a in scores:
            if token in special:
                continue
            color = f"rgba(0,160,0,{min(abs(a), 1):.2f})" if a > 0 else \
                f"rgba(220,0,0,{min(abs(a), 1):.2f})"
            spans.append(f'<span style="background:{color}" title="{a:+.3f}">'
                         f"{html.escape(token)}</span>")
        what = html.escape(str(row.get("label", row.get("value", row.get("labels")))))
        lines.append(f"<p><b>{what}</b> &nbsp; {' '.join(spans)}</p>")
    path.write_text("<!doctype html><meta charset='utf-8'><title>bertlab explanations</title>"
                    "<body style='font-family:sans-serif'>"
                    "<p>Integrated gradients towards each predicted label: green pushed "
                    "towards it, red away.</p>\n" + "\n".join(lines) + "</body>\n",
                    encoding="utf-8")
