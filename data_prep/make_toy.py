"""Build a toy two-class dataset (standard layout + manifest with every generating factor).

    python -m data_prep.make_toy --attribute glasses --scale default [--data-root data] [--size 32] [--seed 0]
"""
import argparse

from hsep_utils.datasets import build_toy_dataset, split_counts
from hsep_utils.parameters import SCALES
from hsep_utils.presets import repo_path
from hsep_utils.toy import ATTRIBUTES


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attribute", choices=ATTRIBUTES, required=True)
    ap.add_argument("--scale", choices=list(SCALES), default="default")
    ap.add_argument("--n-train-per-class", type=int, help="overrides the scale")
    ap.add_argument("--n-test-per-class", type=int, help="overrides the scale")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    scale = SCALES[a.scale]
    m, root = build_toy_dataset(repo_path(a.data_root), a.attribute, a.n_train_per_class or scale["n_train_per_class"],
                          a.n_test_per_class or scale["n_test_per_class"], a.size, a.seed)
    print(root)
    print(split_counts(m).to_string(index=False))


if __name__ == "__main__":
    main()
