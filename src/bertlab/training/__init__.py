"""The recipe: train(), the Trainer and its budget, loggers, results, the lr range test."""
