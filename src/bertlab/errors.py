"""User-facing errors: the entry points print them as one line `error: ...` and exit non-zero."""
from __future__ import annotations

import sys
from typing import NoReturn


class BertlabError(Exception):
    """A mistake the user can fix; the message names the bad value and what would be valid."""


class ConfigError(BertlabError):
    """A config value that cannot work."""


class DataError(BertlabError):
    """Data that cannot be read or used."""


class Unavailable(BertlabError):
    """Something the run needs cannot be reached here (the Hub, offline)."""


def user_error(exc: BaseException) -> BertlabError | None:
    """The BertlabError behind `exc`, if any (OmegaConf and Hydra wrap what resolvers raise)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BertlabError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class Diverged(Exception):
    """The training loss became NaN or infinite: training stops at that step."""



def exit_usage(message: str) -> NoReturn:
    """A usage mistake found on the command line: one line, exit 2, before anything is written."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def require(module: str, extra: str, what: str) -> None:
    """An optional package `what` needs: one line naming the extra that installs it."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what} needs the {module} package, which is not installed: "
                          f"pip install -e '.[{extra}]'")


def first_line(e: BaseException) -> str:
    """The cause's type and first line: a library's error as one line."""
    cause = e.__cause__ or e
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"
