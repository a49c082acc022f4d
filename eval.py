"""Test a trained run again: `python eval.py run_dir=outputs/runs/<run> [split=...] [file=...]`."""
import sys

from bertlab.cli.entry import entry
from bertlab.errors import exit_usage

if __name__ == "__main__":
    if not any(a.startswith("run_dir=") for a in sys.argv[1:]) and "--help" not in sys.argv:
        exit_usage("give run_dir=outputs/runs/<run>, the training run to test")
    entry(__file__, "eval", "bertlab.use.evaluate:evaluate", check="bertlab.use.checks:check_eval")
