"""What a run's predictions say: per-class reports and figures; report.py's comparison of runs."""
