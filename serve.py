"""Serve a trained run over HTTP: `python serve.py run_dir=outputs/runs/<run> [port=8000]`."""
from bertlab.cli import entry

if __name__ == "__main__":
    entry(__file__, "serve", "bertlab.serve:serve", check="bertlab.use_checks:check_serve")
