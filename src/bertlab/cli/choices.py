"""The words of the settings that name a choice whose code needs torch, here so that the
command-line checks (checks.py) answer a typo before torch is imported."""

LONG_TEXT = ("truncate", "windows")  # data.long_text (data/windows.py)
POOLS = ("mean", "max")  # data.window_pool (data/windows.py)
PEFT_METHODS = ("lora",)  # model.peft (models/network.py)
SOUP_METHODS = ("greedy", "uniform")  # callbacks.soup.method (callbacks/soup.py)
