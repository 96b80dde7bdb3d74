"""nbval over notebooks/ (rasbt/LLMs-from-scratch style): every committed notebook executes top to
bottom in the current environment. ``HSEP_SMOKE_DIR`` switches the notebooks to the smoke scale and
sends their data and results to a temp folder (``presets.from_namespace``)."""
import os
import subprocess
import sys

from hsep_utils.presets import REPO_ROOT, SMOKE_ENV


def test_notebooks_execute_with_nbval(tmp_path):
    env = {**os.environ, SMOKE_ENV: str(tmp_path), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
                           "--nbval-cell-timeout=600", "-q",
                           "-p", "no:cacheprovider", "notebooks/"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " failed" not in proc.stdout
    assert (tmp_path / "results" / "toy-glasses" / "tables" / "quantitative.csv").exists()
