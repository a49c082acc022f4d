"""Export a trained run as a Hugging Face folder: `python export.py run_dir=<run> out=<folder>`."""
from bertlab.cli import entry

if __name__ == "__main__":
    entry(__file__, "export", "bertlab.export:export", check="bertlab.use_checks:check_export")
