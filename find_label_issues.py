"""The training rows whose label looks wrong: `python find_label_issues.py [data=...] [method=finetune]`."""
from bertlab.cli.entry import entry

if __name__ == "__main__":
    entry(__file__, "find_label_issues", "bertlab.label_issues.find:find_label_issues",
          check="bertlab.label_issues.find:check")
