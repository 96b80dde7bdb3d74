"""CelebA-HQ gender / smile (or any of its 40 attributes) split from CelebAMask-HQ-attribute-anno.txt.

    python -m data_prep.celebahq --attribute smile [--annotations data/CelebAMask-HQ/CelebAMask-HQ-attribute-anno.txt]
                                 [--images data/CelebAMask-HQ/CelebA-HQ-img]

gender is the ``Male`` column (target: 1), smile ``Smiling``; any other column name works too
(target: 1, background: −1). Defaults are the celebahq-* presets' (256 px, seed 0, 10k/10k train,
3.5k/3.5k test), so the folder written here is the one the preset's notebooks reuse. Listed
images missing on disk are skipped and counted. Relative paths are relative to the repository root.
"""
from __future__ import annotations

import argparse

from hsep_utils.parameters import SCALES
from hsep_utils.real_data import CELEBAHQ_DEFAULTS, add_split_options, prepare_real_dataset, print_report


def split_celebahq(attribute: str, annotations: str = CELEBAHQ_DEFAULTS["annotations"],
                   images: str = CELEBAHQ_DEFAULTS["images"], n_train_per_class: int = SCALES["full"]["n_train_per_class"],
                   n_test_per_class: int = SCALES["full"]["n_test_per_class"], size: int = 256, seed: int = 0,
                   data_root: str = "data", progress: bool = True, workers: int | None = None):
    """Build (or reuse) the split; returns (manifest, dataset folder)."""
    params = dict(dataset_kind="celebahq", attribute=attribute, annotations=annotations, images=images,
                  n_train_per_class=n_train_per_class, n_test_per_class=n_test_per_class, image_size=size,
                  seed=seed, data_root=data_root)
    return prepare_real_dataset(params, progress, workers)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attribute", required=True, help="gender | smile | an annotation column such as Eyeglasses")
    ap.add_argument("--annotations", default=CELEBAHQ_DEFAULTS["annotations"])
    ap.add_argument("--images", default=CELEBAHQ_DEFAULTS["images"], help="CelebA-HQ-img/ with <i>.jpg")
    add_split_options(ap)
    a = ap.parse_args(argv)
    print_report(*split_celebahq(a.attribute, a.annotations, a.images, a.n_train_per_class, a.n_test_per_class,
                                 a.size, a.seed, a.data_root, workers=a.workers))


if __name__ == "__main__":
    main()
