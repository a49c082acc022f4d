"""Hugging Face Hub access that fails in seconds, with one clear line, when the Hub is unreachable."""
from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from bertlab.errors import ConfigError, Unavailable


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe: offline, the Hub clients would otherwise retry for ~25 seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false"):
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def ensure_hub_or_offline() -> None:
    """When the Hub is unreachable, make its clients use their local caches only."""
    if hub_reachable():
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True  # both read the variable at import
    datasets.config.HF_HUB_OFFLINE = True


def check_local(name_or_path: str, what: str = "model.name_or_path") -> Path | None:
    """The folder that `name_or_path` names (None: a Hub id); a local path that is no folder is
    refused in one line."""
    path = Path(os.path.expanduser(name_or_path))
    if name_or_path.startswith(("/", ".", "~")) and not path.is_dir():  # a local path, not a Hub id
        raise ConfigError(f"{what}={name_or_path} " + ("is a file; give the model's folder"
                          if path.exists() else "does not exist") + " (a local model folder, or a Hub id)")
    if path.is_dir():
        needs = ("config.json",) if what == "model.name_or_path" else (
            "tokenizer.json", "tokenizer_config.json", "vocab.txt", "sentencepiece.bpe.model")
        if not any((path / name).is_file() for name in needs):
            raise ConfigError(f"{what}={name_or_path} is a folder without a "
                              f"{'model' if what == 'model.name_or_path' else 'tokenizer'} (no "
                              f"{' or '.join(needs[:2])}); give a folder that save_pretrained "
                              f"wrote, or a Hub id")
        return path
    return None


def from_pretrained(loader, name_or_path: str, what: str = "model.name_or_path", **kwargs):
    """`loader.from_pretrained(name_or_path)`, a local folder or a Hub id, with a one-line error."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # ("Loading weights": a second's work, no wait)
    if check_local(name_or_path, what) is None:
        ensure_hub_or_offline()
    try:
        return loader.from_pretrained(name_or_path, **kwargs)
    except OSError as e:
        raise Unavailable(
            f"{what}={name_or_path!r} is neither a local folder nor a Hub id that is cached or "
            f"reachable (offline?); use model=minilm or a local folder ({str(e).splitlines()[0]})"
        ) from e


def check_max_length(max_length: int, limit: int | None) -> None:
    if limit is not None and limit < 1_000_000 and max_length > limit:  # (unknown: a huge placeholder)
        raise ConfigError(f"max_length={max_length} is more than this model's limit of {limit} "
                          f"tokens; use max_length={limit} or less")
