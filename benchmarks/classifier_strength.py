"""How well can an SR classifier of each shape read a toy preset's validation images and their true
counterfactuals? The selection classifier picks best.pt and α on validation and reads the oracle
h-swap (hsep_utils.diagnostics); a classifier that misreads clean images or counterfactuals caps
every SR measured with it.

    PYTHONPATH=. python benchmarks/classifier_strength.py [--presets toy-smile ...] > out.txt

Trains each shape on the selection half of the preset's training split (as notebook 02 does) and
prints its accuracy on the validation images and on their counterfactuals (labels flipped). Reads
validation only, never the sealed split."""
from __future__ import annotations

import argparse
import json

import torch

from hsep_utils import presets
from hsep_utils.classifier import SmallCNN, predict, train_classifier
from hsep_utils.datasets import toy_counterfactual_set
from hsep_utils.images import Images
from hsep_utils.splits import load_preset_data

SHAPES = {"w32-b3-e5": (32, 3, 5), "w32-b4-e5": (32, 4, 5), "w32-b3-e15": (32, 3, 15), "w32-b4-e15": (32, 4, 15),
          "w48-b4-e5": (48, 4, 5), "w48-b4-e15": (48, 4, 15)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["toy-glasses", "toy-smile", "toy-age", "toy-gender"])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES))
    ap.add_argument("--half", type=int, default=0, help="0: the selection half of the training split, 1: the judge's")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    for preset in a.presets:
        P = presets.resolve(preset)
        data = load_preset_data(P, P["image_size"], P["n_val_per_class"])
        bg, tg = data["train_bg"].x[a.half::2], data["train_tg"].x[a.half::2]
        x, y = Images.concat([bg, tg]), torch.cat([torch.zeros(len(bg)), torch.ones(len(tg))])
        val = {c: data[f"val_{c}"] for c in ("bg", "tg")}
        val_x = {c: s.x.load() for c, s in val.items()}
        val_cf = {c: toy_counterfactual_set(s.rows, P["attribute"], P["image_size"])[0] for c, s in val.items()}
        for name in a.shapes:
            width, blocks, epochs = SHAPES[name]
            torch.manual_seed(P["seed"])
            model = train_classifier(SmallCNN(width, blocks), x, y, epochs=epochs, seed=P["seed"], progress=False)
            acc = lambda imgs, is_tg: (predict(model, imgs) == is_tg).float().mean().item()  # noqa: E731
            print(json.dumps(dict(preset=preset, shape=name, half=a.half, n_train=len(x),
                                  val_bg=round(acc(val_x["bg"], False), 3), val_tg=round(acc(val_x["tg"], True), 3),
                                  cf_of_bg=round(acc(val_cf["bg"], True), 3), cf_of_tg=round(acc(val_cf["tg"], False), 3))),
                  flush=True)


if __name__ == "__main__":
    main()
