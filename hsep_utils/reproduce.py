"""Run the study's notebooks in order with papermill for one or more presets.

    python -m hsep_utils.reproduce                       # the default preset, toy-glasses: notebooks 00-04
    python -m hsep_utils.reproduce --notebooks 05        # its ablation (Tables 5-12; reads 02's classifier)
    python -m hsep_utils.reproduce --preset toy-smile -p scale smoke
    python -m hsep_utils.reproduce --preset all-toy --resume   # every toy preset, skipping finished notebooks
    python -m hsep_utils.reproduce --with-ablation       # 00-05

Executed notebooks, figures and tables go to ``results/<preset>/``. The run stops at the first
failing notebook and names the partially executed copy. ``--resume`` skips a notebook whose
executed copy finished without error, with the same parameters, after the notebook and the preset
file were last changed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from .presets import REPO_ROOT, preset_path, repo_path

DEFAULT_PRESET = "toy-glasses"
STUDY = ["00", "01", "02", "03", "04"]
"""What a plain run executes: data, Fig. 9, training, Fig. 6/7, Tables 1-4. The ablation (05) trains
many configurations and runs on request (``--notebooks 05`` or ``--with-ablation``); 06 edits one
image of the user's (``--notebooks 06``, or JupyterLab)."""
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
WHAT_TO_OPEN = ("tables/quantitative.md", "qualitative_add.png", "qualitative_remove.png", "tables/ablation_t0.md")
"""The results a reader looks at first, named at the end of a run that wrote them."""


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks, or those whose number or name is in ``only``."""
    nbs = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        unknown = [o for o in only if not any(n.stem == o or n.stem[:2] == o for n in nbs)]
        if unknown:
            raise ValueError(f"unknown notebooks {unknown}; known: {', '.join(n.stem for n in nbs)}")
        nbs = [n for n in nbs if n.stem in only or n.stem[:2] in only]
    return nbs


def expand_presets(names: list[str]) -> list[str]:
    """Preset names with ``all-toy`` / ``all`` expanded to the matching presets in ``params/``."""
    from .presets import known_presets

    out = []
    for name in names:
        if name == "all-toy":
            out += [p for p in known_presets() if p.startswith("toy-")]
        elif name == "all":
            out += known_presets()
        else:
            out.append(name)
    return out


def finished(executed: Path, source: Path, params_file: Path, passed: dict) -> bool:
    """True when ``executed`` ran to the end without error, given ``passed``, after ``source`` and
    ``params_file`` (the parameters it ran with) were last changed: ``--resume`` skips it."""
    if not executed.exists() or executed.stat().st_mtime < max(source.stat().st_mtime, params_file.stat().st_mtime):
        return False
    try:
        meta = json.loads(executed.read_text())["metadata"].get("papermill", {})
    except (json.JSONDecodeError, KeyError):
        return False
    return meta.get("exception") is None and meta.get("end_time") is not None and meta.get("parameters") == passed


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it: what results and logs name."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)


def write_run_parameters(preset: str, overrides: dict) -> tuple[dict, Path]:
    """The preset with ``overrides`` over every default, written to ``results/<preset>/params.yaml``:
    what the notebooks run with, handed to each as its ``preset`` (so papermill injects one
    parameter, which every notebook declares), and kept beside the results. The file is rewritten
    only when its content changes, so ``--resume`` can trust its time."""
    from .io import write_text
    from .parameters import DEFAULTS
    from .presets import with_overrides

    params = {**DEFAULTS, **with_overrides(preset, overrides)}
    path = repo_path(params["results_root"]) / params["preset"] / "params.yaml"
    text = (f"# what the last python -m hsep_utils.reproduce ran: {shown(preset_path(preset))}, -p {overrides}\n"
            + yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    if not path.exists() or path.read_text() != text:
        write_text(path, text)
    return params, path


def relative_paths(notebook: Path) -> None:
    """Rewrite this machine's repository path in an executed notebook (papermill metadata, printed
    paths) as a path relative to the repository, so committed results name no machine."""
    from .io import write_text

    text = notebook.read_text()
    write_text(notebook, text.replace(str(REPO_ROOT) + "/", ""))


def live_progress(notebook: Path, prefix: str, log, show_output: bool) -> dict:
    """papermill arguments that show a notebook's progress while it runs: ``prefix cell k/n: its first
    line`` through ``log`` as each code cell starts, and (``show_output``) what the cells print, the
    training loop's progress bar included, on this terminal. The kernel's own start-up warnings (it
    listens on localhost TCP) are kept out."""
    import itertools

    import nbformat

    n = sum(c.cell_type == "code" for c in nbformat.read(notebook, 4).cells) + 1  # + papermill's parameters cell
    count = itertools.count(1)

    def on_cell_execute(cell, cell_index):
        first = next((line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")), "")
        log(f"{prefix} cell {next(count)}/{n}: {first[:70]}")

    kw = dict(on_cell_execute=on_cell_execute, extra_arguments=["--IPKernelApp.log_level=ERROR"])
    return kw | (dict(stdout_file=sys.stdout, stderr_file=sys.stderr) if show_output else {})


def run_preset(preset: str, overrides: dict | None = None, log=print, resume: bool = False,
               only: list[str] | None = None, show_output: bool = True) -> Path:
    """Execute every notebook (or those in ``only``) for ``preset``; returns its results folder."""
    import papermill as pm

    params, params_file = write_run_parameters(preset, overrides or {})
    out = params_file.parent
    passed = {"preset": shown(params_file)}
    nbs = notebooks(only)
    log(f"[{params['preset']}] running {', '.join(n.stem for n in nbs)} with {passed['preset']}")
    start, ran = time.time(), 0
    for nb in nbs:
        target, t0 = out / nb.name, time.time()
        if resume and finished(target, nb, params_file, passed):  # later notebooks read earlier outputs:
            # once one reruns, the rest rerun too (resume is switched off below)
            log(f"[{params['preset']}] {nb.name} finished earlier with these parameters: skipped (--resume)")
            continue
        resume = False
        log(f"[{params['preset']}] {nb.name} ...")
        try:
            pm.execute_notebook(str(nb), str(target), parameters=passed, cwd=str(NOTEBOOK_DIR), progress_bar=False,
                                kernel_name="python3", **live_progress(nb, f"[{params['preset']}] {nb.stem[:2]}", log,
                                                                       show_output))
        except pm.PapermillExecutionError as e:
            raise RuntimeError(f"{nb.name} failed for preset {params['preset']} in cell {e.exec_count}: "
                               f"{e.ename}: {e.evalue}\npartially executed copy: {target}") from None
        relative_paths(target)
        ran += 1
        log(f"[{params['preset']}] {nb.name} done in {time.time() - t0:.0f} s")
    minutes, seconds = divmod(round(time.time() - start), 60)
    made = [shown(out / f) for f in WHAT_TO_OPEN if (out / f).exists() and (out / f).stat().st_mtime > start - 1]
    log(f"[{params['preset']}] {ran} notebook{'s' * (ran != 1)} run in {minutes} min {seconds} s"
        + (f"; open {', '.join(made)}" if made else ""))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append",
                    help=f"preset name, all-toy, all, or a params YAML (repeatable; default {DEFAULT_PRESET})")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="override one parameter (VALUE parsed as YAML)")
    ap.add_argument("--resume", action="store_true", help="skip notebooks that finished earlier with the same parameters")
    ap.add_argument("--notebooks", nargs="+", metavar="NN",
                    help=f"run only these notebooks (numbers or names; default {' '.join(STUDY)})")
    ap.add_argument("--with-ablation", action="store_true", help="run the study and the ablation 05")
    args = ap.parse_args(argv)
    only = args.notebooks or (STUDY + ["05"] if args.with_ablation else STUDY)
    overrides = {k: yaml.safe_load(v) for k, v in args.param}
    try:
        for preset in expand_presets(args.preset or [DEFAULT_PRESET]):
            print(f"results: {run_preset(preset, overrides, resume=args.resume, only=only)}")
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        print(f"reproduce: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
