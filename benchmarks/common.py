"""What the benchmark scripts share: printing their one line and keeping it in a results file."""
from __future__ import annotations


def report(line: str, results: str | None) -> None:
    """Print `line` (a markdown list item) and, with `results`, append it to that file."""
    print(line)
    if results:
        with open(results, "a") as f:
            f.write(line + "\n")
