"""Run the study's notebooks in order with papermill for one or more presets.

    python -m hsep_utils.reproduce                       # the default preset, toy-glasses
    python -m hsep_utils.reproduce --preset toy-smile -p scale smoke

Executed notebooks, figures and tables go to ``results/<preset>/``. The run stops at the first
failing notebook and names the partially executed copy.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from .presets import REPO_ROOT, load_preset, preset_path, repo_path

DEFAULT_PRESET = "toy-glasses"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PLANNED = ("00_dataset_split", "01_hspace_reconstruction_steps", "02_train_mapping_network",
           "03_qualitative_grids", "04_quantitative_tables", "05_ablation_tables")


def notebooks() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def relative_paths(notebook: Path) -> None:
    """Rewrite this machine's repository path in an executed notebook (papermill metadata, printed
    paths) as a path relative to the repository, so committed results name no machine."""
    from .io import write_text

    text = notebook.read_text()
    write_text(notebook, text.replace(str(REPO_ROOT) + "/", ""))


def run_preset(preset: str, overrides: dict | None = None, log=print) -> Path:
    """Execute every notebook for ``preset``; returns its results folder."""
    import papermill as pm

    params = {**load_preset(preset), **(overrides or {})}
    out = repo_path(params.get("results_root", "results")) / params["preset"]
    out.mkdir(parents=True, exist_ok=True)
    nbs = notebooks()
    missing = [n for n in PLANNED if not (NOTEBOOK_DIR / f"{n}.ipynb").exists()]
    log(f"[{params['preset']}] running {', '.join(n.stem for n in nbs)} with {preset_path(preset).name}"
        + (f"; not in the repository yet: {', '.join(missing)}" if missing else ""))
    for nb in nbs:
        target, t0 = out / nb.name, time.time()
        log(f"[{params['preset']}] {nb.name} ...")
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, cwd=str(NOTEBOOK_DIR), progress_bar=False,
                                kernel_name="python3")
        except pm.PapermillExecutionError as e:
            raise RuntimeError(f"{nb.name} failed for preset {params['preset']} in cell {e.exec_count}: "
                               f"{e.ename}: {e.evalue}\npartially executed copy: {target}") from None
        relative_paths(target)
        log(f"[{params['preset']}] {nb.name} done in {time.time() - t0:.0f} s")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", help=f"preset name or params YAML (repeatable; default {DEFAULT_PRESET})")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="override one parameter (VALUE parsed as YAML)")
    args = ap.parse_args(argv)
    overrides = {k: yaml.safe_load(v) for k, v in args.param}
    try:
        for preset in args.preset or [DEFAULT_PRESET]:
            print(f"results: {run_preset(preset, overrides)}")
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        print(f"reproduce: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
