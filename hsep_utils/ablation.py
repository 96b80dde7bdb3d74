"""Tables 5–12: one mapping network per architecture × depth × editing interval (notebook 05)."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pandas as pd
from tqdm import tqdm  # text bars: ipywidgets ones keep only their first state in executed notebooks

from .diffusion import Diffusion
from .evaluation import markdown_table, preset_loss_models, results_frame
from .io import save_dataframe, write_text
from .mapping import ARCHITECTURES
from .preset_training import image_term_models, train_config, train_preset
from .quantitative import quantitative_rows
from .splits import Split, inversion_cache, inversion_dir
from .train import TrainConfig, recipe, recorded_recipe


ABLATION_GRID = dict(t_edit=(400, 0), arch=("a", "b", "c", "d"), depth=(8, 12))
"""Tables 5–12 of the paper: every architecture × depth, for each editing interval."""



def ablation_study(diffusion: Diffusion, data: dict[str, Split], params: dict, classifier, judge, models: dict,
                   out_dir: str | Path, grid: dict = ABLATION_GRID, progress: bool = True) -> pd.DataFrame:
    """Train and evaluate one mapping network per (t_edit, arch, depth) of ``grid`` with the
    preset's ablation budget (``ablation_batches`` batches, ``n_ablation_images`` test images per
    domain), without the weights' average (``ema_decay`` 0: these runs are shorter than its horizon,
    and the paper has none), edited with the paper's swap and removal (h̃ in place of h, α = 1, S = 0). Every configuration reuses the preset's cached inversions; a finished configuration
    (its ``rows.json``) is read back instead of retrained, an interrupted one resumes. ``classifier``
    validates (picks each configuration's checkpoint), ``judge`` scores the rows. ``models``:
    ``evaluation.metric_models`` (the metrics' networks; the loss terms load their own). Returns
    the long table: one row per configuration and domain."""
    out_dir = Path(out_dir)
    cache_dir = inversion_dir(params)
    cache = inversion_cache(diffusion, params, data)
    losses = preset_loss_models(params, diffusion.device)  # the loss terms' networks, loaded once
    rows = []
    configs = list(itertools.product(grid["t_edit"], grid["arch"], grid["depth"]))
    for t_edit, arch, depth in tqdm(configs, desc="ablation", disable=not progress):
        run = out_dir / f"t{t_edit}-{arch}-d{depth}"
        done = run / "rows.json"
        p = {**params, "t_edit": t_edit, "arch": arch, "depth": depth,
             "train_batches": params["ablation_batches"], "validate_every": 0, "ema_decay": 0,
             "salient_strength": 1.0, "removal_strength": 1.0, "edit_form": "replace", "edit_mask": 0.0}  # the paper's edits
        cfg, lpips, id_embed = image_term_models(train_config(p), diffusion.device, p, losses)
        if done.exists():
            check_same_recipe(run, cfg)
        else:
            net = train_preset(diffusion, data, cfg, run, classifier, cache_dir, lpips, id_embed, progress=False,
                               eval_batch_size=params["eval_batch_size"], n_recon_per_class=params["n_val_recon_per_class"])
            found = quantitative_rows(diffusion, net, cache, data, p, judge, models, params["n_ablation_images"])
            write_text(done, json.dumps(found, indent=1))
        rows += [{"t_edit": t_edit, "arch": arch, "depth": depth, **r} for r in json.loads(done.read_text())]
    return pd.DataFrame(rows)


def check_same_recipe(run: Path, cfg: TrainConfig) -> None:
    """A finished configuration is read back only if it was trained with the recipe asked for now: a preset
    changed since (another loss weight, say) would otherwise put the old recipe's rows in the new tables."""
    recorded = recorded_recipe(json.loads((run / "train_config.json").read_text())["train"])
    differ = sorted(k for k, v in recipe(cfg).items() if recorded.get(k) != v)
    if differ:
        shown = ", ".join(f"{k} {recorded.get(k)!r} → {getattr(cfg, k)!r}" for k in differ)
        raise ValueError(f"{run} was trained with another recipe than the preset's now ({shown}): delete {run.parent} "
                         f"(or that folder alone) to train the ablation again")


def write_ablation_tables(table: pd.DataFrame, tables_dir: str | Path, preset: str) -> dict[int, str]:
    """``ablation.csv`` (columns t_edit, arch, depth, then ``evaluation.write_table``'s), per
    t_edit ``ablation_t<t>.md`` laid out like the paper's Tables 5–12, and ``ablation_means.csv``
    (``ablation_means``); returns the Markdown."""
    tables_dir = Path(tables_dir)
    out, parts = {}, []
    for t_edit, group in table.groupby("t_edit", sort=False):
        rows = group.to_dict("records")
        labelled = [{**r, "domain": f"({r['arch']}) depth {r['depth']}, {r['domain']}"} for r in rows]
        out[t_edit] = markdown_table(labelled, f"{preset}: ablation, t_edit = {t_edit}")
        write_text(tables_dir / f"ablation_t{t_edit}.md", out[t_edit])
        part = results_frame(labelled)  # labels keep each configuration's unavailable reasons apart
        part["domain"] = group["domain"].values
        parts.append(pd.concat([group[["t_edit", "arch", "depth"]].reset_index(drop=True), part], axis=1))
    save_dataframe(pd.concat(parts, ignore_index=True), tables_dir / "ablation.csv")
    save_dataframe(ablation_means(table), tables_dir / "ablation_means.csv")
    return out


def ablation_means(table: pd.DataFrame) -> pd.DataFrame:
    """The ablation read the way the paper draws its findings: mean SR of adding (x) and removal (y)
    and mean PSNR per level of each factor, over the other factors — arch (a)–(d); fusion (fused
    (a), (c) against additive (b), (d)) at each t_edit; t_edit; depth. One row per level."""
    fused = table["arch"].map(lambda a: "fused (a, c)" if ARCHITECTURES[a][1] else "additive (b, d)")
    t = table.assign(fusion=fused, sr=pd.to_numeric(table["sr"], errors="coerce"),
                     psnr=pd.to_numeric(table["psnr"], errors="coerce"))
    x, y = t[t["domain"] == "x"], t[t["domain"] == "y"]
    rows = []
    for factor, keys in (("arch", ["arch"]), ("fusion", ["t_edit", "fusion"]), ("t_edit", ["t_edit"]),
                         ("depth", ["depth"])):
        removal = dict(list(y.groupby(keys, sort=False)))
        for level, added in x.groupby(keys, sort=False):
            removed = removal[level]
            label = ", ".join(f"t_edit {v}" if k == "t_edit" and factor == "fusion" else str(v)
                              for k, v in zip(keys, level))
            rows.append(dict(factor=factor, level=label, add_sr=added["sr"].mean(), remove_sr=removed["sr"].mean(),
                             x_psnr=added["psnr"].mean(), y_psnr=removed["psnr"].mean()))
    return pd.DataFrame(rows)
