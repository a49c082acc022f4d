"""Label new texts with a trained run: `python predict.py run_dir=outputs/runs/<run> input=texts.txt`."""
from bertlab.cli.entry import entry

if __name__ == "__main__":
    entry(__file__, "predict", "bertlab.use.predict:predict", check="bertlab.use.checks:check_predict")
