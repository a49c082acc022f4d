"""Run ../shared/bench/hf_trainer_peer.py at another seed: `python peer_seed.py SEED PEER [args]`.

The peer fixes seed 0 (torch.manual_seed(0) and TrainingArguments(seed=0)); to compare seed means
with ours (quality.py --peer-seeds), both are replaced by SEED before the script runs, unchanged
otherwise. Hand-written: the peer has no seed option.
"""
import runpy
import sys

import torch
import transformers

seed = int(sys.argv[1])
manual_seed = torch.manual_seed
torch.manual_seed = lambda _: manual_seed(seed)


class TrainingArguments(transformers.TrainingArguments):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "seed": seed})


transformers.TrainingArguments = TrainingArguments
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
