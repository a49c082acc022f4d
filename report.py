"""Summarise a sweep: `python report.py sweep_dir=outputs/multiruns/<sweep>`."""
from bertlab.cli.entry import entry

if __name__ == "__main__":
    entry(__file__, "report", "bertlab.analysis.report:report")
