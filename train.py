"""Fine-tune a BERT-family encoder: `python train.py [group=option ...] [key=value ...] [-m]`."""
from bertlab.cli import entry

if __name__ == "__main__":
    entry(__file__, "train", "bertlab.train:train", check="bertlab.checks:check_config")
