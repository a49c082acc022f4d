"""Fine-tune a BERT-family encoder: `python train.py [group=option ...] [key=value ...] [-m]`."""
from bertlab.cli.entry import entry

if __name__ == "__main__":
    entry(__file__, "train", "bertlab.training.train:train", check="bertlab.training.checks:check_config")
