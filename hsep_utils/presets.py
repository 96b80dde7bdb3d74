"""Presets: one YAML per attribute dataset in ``params/``, over the defaults of ``parameters``.

A notebook names its preset (``preset = "toy-glasses"``, or the path of a params YAML) and takes
every other parameter from it through ``resolve``; a value given on top (``papermill -p NAME
VALUE``) wins. Relative paths are relative to the repository root, so notebooks run the same from
JupyterLab, papermill or the batch runner.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from .parameters import PARAMETERS, REPO_ROOT, SCALES, check, complete
from .toy import ATTRIBUTES as TOY_ATTRIBUTES

PARAMS_DIR = REPO_ROOT / "params"


def known_presets() -> list[str]:
    return sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def preset_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        for candidate in (p, repo_path(p)):
            if candidate.exists():
                return candidate
    candidate = PARAMS_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise FileNotFoundError(f"unknown preset {str(name_or_path)!r}: known presets are {', '.join(known_presets())}, "
                            f"or pass the path of a params YAML")


def load_preset(name_or_path: str | Path) -> dict:
    """The preset's parameters as its file gives them, checked: unknown keys and bad values are named
    with the allowed ones."""
    path = preset_path(name_or_path)
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(params, dict):
        raise ValueError(f"{path} must be a mapping of parameter: value, got {type(params).__name__}")
    check_preset(params, str(path))
    if "preset" not in params:  # a notebook would fall back to the default name and overwrite results/toy-glasses/
        raise ValueError(f"{path} lacks the key 'preset' ({PARAMETERS['preset'].meaning}): add e.g. `preset: {path.stem}`")
    return params


def check_preset(params: dict, where: str) -> None:
    """``parameters.check``, and a toy attribute the toy world draws."""
    check(params, where)
    if params.get("dataset_kind", "toy") == "toy" and params.get("attribute", "glasses") not in TOY_ATTRIBUTES:
        raise ValueError(f"{where}: toy attribute {params['attribute']!r} is not one of {list(TOY_ATTRIBUTES)}")


def resolve(preset: str | Path, overrides: dict | None = None, needs_ddim_steps: bool = True) -> dict:
    """What a notebook runs with: every parameter's default, then the preset's file, then
    ``overrides`` (checked), switched to the smoke run by ``HSEP_SMOKE_DIR`` (``smoke_switch``),
    sizes filled from the scale, and ``ddim_steps: auto`` replaced by notebook 01's choice
    (``chosen_ddim_steps``) unless ``needs_ddim_steps`` is False (notebooks 00–01, which run
    before the choice or make it)."""
    params = complete(smoke_switch(with_overrides(preset, overrides)))
    if params["ddim_steps"] == "auto" and needs_ddim_steps:
        params["ddim_steps"] = chosen_ddim_steps(params)
    return params


def with_overrides(preset: str | Path, overrides: dict | None = None) -> dict:
    """The preset's file with ``overrides`` on top, checked as a whole."""
    params = {**load_preset(preset), **(overrides or {})}
    check_preset(params, f"preset {preset} with {sorted(overrides or {})}")
    return params


def steps_for_psnr(table, min_psnr: float) -> tuple[int, bool]:
    """The smallest step count of a ``reconstruction_study`` table whose mean PSNR reaches
    ``min_psnr``, and True; when none does, the count of the best PSNR, and False."""
    table = table.sort_values("n_steps")
    reached = table[table["psnr"] >= min_psnr]
    if len(reached):
        return int(reached["n_steps"].iloc[0]), True
    return int(table.loc[table["psnr"].idxmax(), "n_steps"]), False


def chosen_ddim_steps(params: dict) -> int:
    """``ddim_steps: auto``: the smallest step count of notebook 01's ``hspace_steps.csv`` whose
    reconstructions reach ``ddim_steps_min_psnr`` (``steps_for_psnr``)."""
    import pandas as pd

    csv = repo_path(params["results_root"]) / params["preset"] / "hspace_steps.csv"
    if not csv.exists():
        raise FileNotFoundError(f"{csv} is missing: with ddim_steps auto, notebook 01 measures reconstruction per "
                                f"step count and the later notebooks take the fewest steps reaching "
                                f"{params['ddim_steps_min_psnr']} dB; run notebook 01 first (or set ddim_steps)")
    return steps_for_psnr(pd.read_csv(csv), params["ddim_steps_min_psnr"])[0]


def repo_path(p: str | Path) -> Path:
    """A path from a preset, made absolute against the repository root when relative."""
    p = Path(p).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def results_dir(params: dict) -> Path:
    d = repo_path(params["results_root"]) / params["preset"]
    d.mkdir(parents=True, exist_ok=True)
    return d


SMOKE_ENV = "HSEP_SMOKE_DIR"
"""Set to a folder, it turns every notebook into a smoke run writing there (nbval in CI)."""


def from_namespace(ns: dict, needs_ddim_steps: bool = True) -> dict:
    """``resolve`` for a notebook: its ``preset``, with ``overrides_in`` its namespace."""
    return resolve(ns["preset"], overrides_in(ns), needs_ddim_steps)


def overrides_in(ns: dict) -> dict:
    """The parameters besides ``preset`` that a notebook's namespace holds: those papermill injected
    (``-p NAME VALUE``) or the reader set."""
    return {k: ns[k] for k in PARAMETERS if k in ns and k != "preset"}


def smoke_switch(params: dict) -> dict:
    """With the environment variable ``HSEP_SMOKE_DIR`` set, the run is switched to the smoke scale
    and its data and results go to that folder, so executing the committed notebooks as they are
    (nbval) stays short and leaves ``results/`` alone."""
    smoke = os.environ.get(SMOKE_ENV)
    if not smoke:
        return params
    params = {k: v for k, v in params.items() if k not in SCALES["smoke"]}
    return {**params, "scale": "smoke", "data_root": f"{smoke}/data", "results_root": f"{smoke}/results"}


def diffusion_of(params: dict):
    """The preset's frozen base model (``base_model``) on its device, at its ``unet_dtype``,
    compiled when ``compile``: the one way notebooks and tools load it."""
    from .diffusion import load_diffusion

    return load_diffusion(repo_path(params["base_model"]), device_of(params), params.get("unet_dtype") or "fp32",
                          bool(params.get("compile")))


def device_of(params: dict) -> str:
    import torch

    from .distributed import local_device

    d = params.get("device", "auto")
    return local_device(("cuda" if torch.cuda.is_available() else "cpu") if d == "auto" else d)
