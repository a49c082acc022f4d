"""Serve a trained run over HTTP: `python serve.py run_dir=outputs/runs/<run> [port=8000]`."""
from bertlab.cli.entry import entry

if __name__ == "__main__":
    entry(__file__, "serve", "bertlab.use.serve:serve", check="bertlab.use.checks:check_serve")
