"""Text normalisation steps, applied in the order `data.clean` lists them."""
from __future__ import annotations

import re
import unicodedata
from typing import Callable

import ftfy

from bertlab.errors import ConfigError

_URL = re.compile(r"https?://\S*|www\.\S+")
_MENTION = re.compile(r"(?<!\w)@\w+")
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

STEPS: dict[str, Callable[[str], str]] = {
    "fix_text": ftfy.fix_text,                          # mojibake, bad escapes, curly quotes
    "nfkc": lambda s: unicodedata.normalize("NFKC", s),  # unicode compatibility forms
    "strip_control": lambda s: _CONTROL.sub(" ", s),     # NUL and other control characters
    "replace_urls": lambda s: _URL.sub("http", s),       # every link becomes one token
    "replace_mentions": lambda s: _MENTION.sub("@user", s),
    "lowercase": str.lower,
    "normalize_whitespace": lambda s: _SPACE.sub(" ", s).strip(),
}


def cleaner(steps: list[str]) -> Callable[[str | None], str]:
    """One function applying `steps` in order; None becomes ''."""
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ConfigError(f"data.clean has unknown step {unknown[0]!r}; valid: {', '.join(STEPS)}")
    fns = [STEPS[s] for s in steps]

    def clean(text: str | None) -> str:
        text = "" if text is None else str(text)
        for fn in fns:
            text = fn(text)
        return text

    return clean
