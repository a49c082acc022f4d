"""Learning-rate range test: `python tune_lr.py [train overrides] [tune_lr.apply=true]`."""
from bertlab.cli import entry

if __name__ == "__main__":
    entry(__file__, "train", "bertlab.tune:tune_lr", check="bertlab.checks:check_config")
