"""Fine-tune a BERT-family encoder: `python train.py [group=option ...] [key=value ...] [-m]`."""
import sys
from pathlib import Path

import hydra

from bertlab.cli import check_group_choices, run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg) -> float | None:
    from bertlab.train import train  # heavy imports only once the config is good

    return run_task(train, cfg)


if __name__ == "__main__":
    check_group_choices(sys.argv[1:], Path(__file__).parent / "conf")
    main()
