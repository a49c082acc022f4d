"""Export a trained run as a Hugging Face folder: `python export.py run_dir=<run> out=<folder>`."""
from bertlab.cli.entry import entry

if __name__ == "__main__":
    entry(__file__, "export", "bertlab.use.export:export", check="bertlab.use.checks:check_export")
