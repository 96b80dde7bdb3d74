"""Does a base model carry every attribute of the toy world, and its salient sub-factor, in h?

    PYTHONPATH=. python benchmarks/world_screen.py OUTDIR [--model DIR | --steps 6000 --base-options JSON]
        [-n 64] [--ddim 50] [--t-edit-max 600] [--grid-only]

The screen that chose the committed world and base model (issue 29; docs/experiments.md, renderers
v3–v5 and "the noisiest steps"). Without ``--model`` it renders the base model's 20 000 training
images of ``hsep_utils.toy`` (seed 1 000 000) and trains a base DDPM on them (``hsep_utils.base_ddpm``
with ``--base-options``; it resumes from OUTDIR/model/checkpoint.pt). Then per attribute it fits a
toy classifier (4000 + 4000 images of their own seed, seeded) and runs the oracle h-swap
(``hsep_utils.diagnostics.oracle_hswap``, symmetric step, h swapped at the steps t < ``--t-edit-max``,
with donors when adding) on n + n fresh identities, writing OUTDIR/found.json after each attribute
(a rerun skips those done) and the failures' grids. ``--grid-only`` writes OUTDIR/world.png (rows:
each attribute off / on, sub-factors cycling) and stops. Identities and classifiers come from seeds
no preset uses (5000 + 10 k, 42), so the screen never sees a preset's validation or sealed images.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hsep_utils import base_ddpm, toy
from hsep_utils.classifier import build_classifier, predict, train_classifier
from hsep_utils.diagnostics import oracle_hswap
from hsep_utils.plotting import from_uint8, save_grid
from hsep_utils.splits import Split


def images(seed: int, n: int, **attributes: int) -> tuple[pd.DataFrame, torch.Tensor]:
    """Identities 0..n-1 of ``seed`` (attributes fixed where given): their factors and images in [-1, 1]."""
    fs = [toy.sample_factors(seed, i, **attributes) for i in range(n)]
    return pd.DataFrame([f.as_dict() for f in fs]), from_uint8(np.stack([toy.render(f) for f in fs]))


def by_sub_factor(attribute: str, rows: pd.DataFrame, donor_rows: pd.DataFrame, found: dict) -> dict:
    """Per value of the attribute's sub-factor: removing, the oracle SR of the inputs showing it;
    adding, the donor h-swap's oracle SR (added, and with the donor's sub-factor) of donors showing it."""
    (sub,) = toy.SHOWN_ONLY_WITH[attribute]
    key, table = ("oracle_failures", rows) if "donor_hswap_failures" not in found else ("donor_hswap_failures", donor_rows)
    values = table[sub].to_numpy()[:found["n"]]
    ok = np.ones(len(values), bool)
    ok[found[key]] = False
    return {f"{sub}={v}": dict(n=int((values == v).sum()), sr=round(float(ok[values == v].mean()), 3))
            for v in sorted(set(values))}


def world_grid(path: Path, n: int = 8) -> None:
    """Rows: each attribute off, then on (identities 0..n-1 of seed 42, sub-factors cycling)."""
    rows = []
    for attribute, (sub,) in ((a, toy.SHOWN_ONLY_WITH[a]) for a in toy.ATTRIBUTES):
        fs = [toy.sample_factors(42, i) for i in range(n)]
        for value in (0, 1):
            rows.append(from_uint8(np.stack([toy.render(replace(f, **{attribute: value, sub: i % 3}))
                                             for i, f in enumerate(fs)])))
    save_grid(rows, path, scale=4)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", type=Path, help="screen this exported base model (e.g. models/toy-ddpm-32) "
                    "instead of training one")
    ap.add_argument("--steps", type=int, default=6000, help="base-model training steps of 64 images")
    ap.add_argument("--base-options", type=json.loads, default={}, metavar="JSON",
                    help='other hsep_utils.base_ddpm options, e.g. \'{"block_out_channels": [32, 64, 128]}\'')
    ap.add_argument("-n", type=int, default=64, help="images per direction in the oracle h-swap")
    ap.add_argument("--ddim", type=int, default=50, help="DDIM steps of the oracle h-swap")
    ap.add_argument("--t-edit-max", type=int, help="swap h only at the steps t < this (the toy presets' t_edit_max)")
    ap.add_argument("--n-classifier", type=int, default=4000, help="training images per class of each classifier")
    ap.add_argument("--grid-only", action="store_true")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    world_grid(a.out / "world.png")
    if a.grid_only:
        return
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()
    if a.model is None:
        base_ddpm.train(out=str(a.out / "model"), device=dev, steps=a.steps, **a.base_options)
    from hsep_utils.diffusion import load_diffusion

    diffusion = load_diffusion(a.model or a.out / "model", dev)
    found_path = a.out / "found.json"
    found = json.loads(found_path.read_text()) if found_path.exists() else {}
    found.setdefault("base_model", dict(model=str(a.model)) if a.model else dict(steps=a.steps,
                                                                                train_s=round(time.time() - t0, 1)))
    for k, attribute in enumerate(toy.ATTRIBUTES):
        if attribute in found:
            continue
        t1 = time.time()
        seeds, nc = 5_000 + 10 * k, a.n_classifier
        _, xb = images(seeds, nc, **{attribute: 0})
        _, xt = images(seeds + 1, nc, **{attribute: 1})
        torch.manual_seed(k)  # the classifier's initial weights
        clf = train_classifier(build_classifier(32)[0].to(dev), torch.cat([xb, xt]),
                               torch.cat([torch.zeros(nc), torch.ones(nc)]), progress=False)
        rows_b, vb = images(seeds + 2, a.n, **{attribute: 0})
        rows_t, vt = images(seeds + 3, a.n, **{attribute: 1})
        acc = torch.cat([~predict(clf, vb), predict(clf, vt)]).float().mean().item()
        entry = dict(classifier_acc=round(acc, 3), ddim_steps=a.ddim, t_edit_max=a.t_edit_max)
        for name, rows, x, is_t in (("add", rows_b, vb, False), ("remove", rows_t, vt, True)):
            donors = Split(rows=rows_t, x=vt) if name == "add" else None
            r = oracle_hswap(diffusion, Split(rows=rows, x=x), attribute, clf, is_t, a.n, a.ddim, asymmetric=False,
                             failures=a.out / f"failures_{attribute}_{name}.png", donors=donors,
                             t_edit_max=a.t_edit_max)
            entry[name] = {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()
                           if not k.endswith("_failures")}
            entry[name]["by_sub_factor"] = by_sub_factor(attribute, rows, rows_t, r)
            print(attribute, name, json.dumps(entry[name]), flush=True)
        entry["seconds"] = round(time.time() - t1, 1)
        found[attribute] = entry
        found_path.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
