"""A smaller copy of a trained run: `python shrink.py run_dir=<run> int8=true [drop_layers=N]`."""
import sys

from bertlab.cli.entry import entry
from bertlab.errors import exit_usage

if __name__ == "__main__":
    if not any(a.startswith("run_dir=") for a in sys.argv[1:]) and "--help" not in sys.argv:
        exit_usage("give run_dir=outputs/runs/<run>, the training run to shrink")
    entry(__file__, "shrink", "bertlab.use.shrink:shrink", check="bertlab.use.checks:check_shrink")
