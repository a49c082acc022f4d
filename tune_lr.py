"""Learning-rate range test: `python tune_lr.py [train overrides] [tune_lr.apply=true]`."""
from bertlab.cli.entry import entry

if __name__ == "__main__":
    entry(__file__, "train", "bertlab.training.tune:tune_lr", check="bertlab.training.checks:check_config")
