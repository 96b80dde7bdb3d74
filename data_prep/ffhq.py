"""FFHQ glasses / age split from the ffhq-features-dataset annotations (standard layout + manifest).

    python -m data_prep.ffhq --attribute glasses [--annotations data/ffhq-features-dataset/json] [--images data/ffhq-dataset/images1024x1024]
    python -m data_prep.ffhq --attribute age --young 18 30 --old 50 120

Defaults are the ffhq-glasses / ffhq-age presets' (256 px, seed 0, 10k/10k train, 3.5k/3.5k test),
so the folder written here is the one the preset's notebooks then reuse. Files with no face
(``[]``) and annotated images missing on disk are skipped and counted; the counts are printed and
kept in the dataset's ``dataset.json``. Relative paths are relative to the repository root, as in presets.
"""
from __future__ import annotations

import argparse

from hsep_utils.parameters import SCALES
from hsep_utils.real_data import FFHQ_DEFAULTS, FFHQ_GLASSES, add_split_options, prepare_real_dataset, print_report


def split_ffhq(attribute: str, annotations: str = FFHQ_DEFAULTS["annotations"], images: str = FFHQ_DEFAULTS["images"],
               glasses_target=FFHQ_DEFAULTS["glasses_target"], age_young=FFHQ_DEFAULTS["age_young"],
               age_old=FFHQ_DEFAULTS["age_old"], n_train_per_class: int = SCALES["full"]["n_train_per_class"],
               n_test_per_class: int = SCALES["full"]["n_test_per_class"], size: int = 256, seed: int = 0,
               data_root: str = "data", progress: bool = True, workers: int | None = None):
    """Build (or reuse) the split; returns (manifest, dataset folder)."""
    params = dict(dataset_kind="ffhq", attribute=attribute, annotations=annotations, images=images,
                  glasses_target=list(glasses_target), age_young=list(age_young), age_old=list(age_old),
                  n_train_per_class=n_train_per_class, n_test_per_class=n_test_per_class, image_size=size,
                  seed=seed, data_root=data_root)
    return prepare_real_dataset(params, progress, workers)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attribute", choices=("glasses", "age"), required=True)
    ap.add_argument("--annotations", default=FFHQ_DEFAULTS["annotations"], help="ffhq-features-dataset json/ folder")
    ap.add_argument("--images", default=FFHQ_DEFAULTS["images"], help="images1024x1024/ (sub-folders or flat)")
    ap.add_argument("--glasses-target", nargs="+", choices=FFHQ_GLASSES[1:], default=FFHQ_DEFAULTS["glasses_target"],
                    help="glasses kinds that count as target (background: NoGlasses)")
    ap.add_argument("--young", nargs=2, type=float, default=FFHQ_DEFAULTS["age_young"], metavar=("MIN", "MAX"),
                    help="age range of the background class (inclusive)")
    ap.add_argument("--old", nargs=2, type=float, default=FFHQ_DEFAULTS["age_old"], metavar=("MIN", "MAX"),
                    help="age range of the target class (inclusive)")
    add_split_options(ap)
    a = ap.parse_args(argv)
    print_report(*split_ffhq(a.attribute, a.annotations, a.images, a.glasses_target, a.young, a.old, a.n_train_per_class,
                       a.n_test_per_class, a.size, a.seed, a.data_root, workers=a.workers))


if __name__ == "__main__":
    main()
