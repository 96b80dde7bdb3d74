"""Every parameter of a study in one place: its default, its type and what it means.

A preset (``params/<preset>.yaml``) overrides these defaults; a notebook's parameters cell holds
only ``preset`` (and what that notebook alone uses), and ``papermill -p NAME VALUE`` or the
runner's ``-p NAME VALUE`` override any parameter on top (``presets.resolve``). Sizes whose default
is ``None`` come from the preset's ``scale``. ``TrainConfig``'s defaults are read from here too.

    python -m hsep_utils.parameters            # every parameter, its default and meaning
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
"""What a relative path among the parameters (data_root, results_root, base_model, ...) is relative to."""

SCALES: dict[str, dict] = {
    # seconds: the notebook tests
    "smoke": dict(n_train_per_class=8, n_test_per_class=4, n_recon_images=4, hspace_steps=[5, 10],
                  n_val_per_class=2, n_val_recon_per_class=2, ddim_steps=5, batch_per_class=2, train_batches=2, n_edit_images=4, validate_every=0,
                  ablation_batches=1, n_ablation_images=2, latent_warmup_steps=20, latent_warmup_pool=8, ema_decay=0.9,
                  ablation_grid=dict(t_edit=[400, 0], arch=["a"], depth=[8])),
    # what the default reproduction affords on a 2-core CPU: 6000 latent warm-up updates, then 120
    # batches of 8 + 8, validated every 20; the weights' average (ema_decay, ~10 batches) is what is
    # validated and kept: single checkpoints swing widely from one validation to the next (docs/method.md);
    # every test image edited and scored (128 per domain: 64 cannot tell an SR of 0.9 from 0.83)
    "default": dict(n_train_per_class=1000, n_test_per_class=128, n_recon_images=32,
                    hspace_steps=[10, 20, 50, 100], n_val_per_class=16, n_val_recon_per_class=16, ddim_steps=20, batch_per_class=8,
                    train_batches=120, n_edit_images=128, validate_every=20,
                    ablation_batches=6, n_ablation_images=32, latent_warmup_steps=6000, latent_warmup_pool=1024,
                    ema_decay=0.995,
                    ablation_grid=None),
    # the paper's sizes (10k/10k train, 3.5k/3.5k test), one full epoch; every test image edited and
    # scored (FID on 1000 images in 2048 dimensions is rank-deficient and biased upwards)
    "full": dict(n_train_per_class=10000, n_test_per_class=3500, n_recon_images=256,
                 hspace_steps=[10, 20, 50, 100, 200], n_val_per_class=100, n_val_recon_per_class=100, ddim_steps=40, batch_per_class=8,
                 train_batches=None, n_edit_images=3500, validate_every=250,
                 ablation_batches=500, n_ablation_images=256, latent_warmup_steps=6000, latent_warmup_pool=1024,
                 ema_decay=0.999,
                 ablation_grid=None),
}

NUMBER = (int, float)


@dataclass(frozen=True)
class Parameter:
    """One parameter: ``default`` (``None`` for a size: the scale's), ``meaning``, and what a given
    value must be: of ``kind`` (``None``: anything) or one of ``words`` (``auto``), and, with
    ``choices``, one of them."""

    default: object
    meaning: str
    kind: type | tuple | None = None
    choices: tuple | None = None
    words: tuple = ()


def _size(meaning: str, kind=int, words: tuple = ()) -> Parameter:
    return Parameter(None, f"{meaning} (None: the scale's)", kind, words=words)


PARAMETERS: dict[str, Parameter] = {
    # what and where
    "preset": Parameter("toy-glasses", "name, used for results/<preset>/", str),
    "dataset_kind": Parameter("toy", "where the images come from", str, ("toy", "ffhq", "celebahq", "folders")),
    "attribute": Parameter("glasses", "the target attribute (toy: glasses, smile, age, gender)", str),
    "image_size": Parameter(32, "pixels; the base model's sample size", int),
    "base_model": Parameter("models/toy-ddpm-32", "local diffusers UNet2DModel directory, a Hugging Face id already "
                            "cached, or a guided-diffusion checkpoint: ffhq_p2.pt / celebahq_p2.pt by name (converted "
                            "once, hsep_utils.adm)", str),
    "data_root": Parameter("data", "where datasets are built / read (relative: to the repository)", str),
    "results_root": Parameter("results", "where results/<preset>/ goes", str),
    "cache_root": Parameter(None, "where inversions and h trajectories are cached (None: cache/ beside data_root, so "
                            "the repository's cache/ by default)", str),
    "seed": Parameter(0, "every random choice derives from it", int),
    "test_seed": Parameter(None, "toy presets: notebooks 03–05 score a sealed test population drawn from this seed "
                           "(identities after the dataset's, datasets.build_toy_sealed) instead of the test split; "
                           "None: the test split", int),
    "scale": Parameter("default", "fills every size left as None: " + ", ".join(SCALES), str, tuple(SCALES)),
    "scales": Parameter(None, "a preset's own sizes at one scale, {scale: {key: value}}, e.g. {default: {ddim_steps: "
                        "50}}: they replace that scale's values there only (a key set outright still wins)", dict),
    "device": Parameter("auto", "cpu | cuda | auto (cuda when available)", str),
    "eval_batch_size": Parameter(64, "images per DDIM pass outside the training step: inversion, h trajectories, "
                                 "edits (with their donors), validation, reconstruction, the metrics' networks", int),
    "unet_dtype": Parameter("fp32", "precision of the frozen base U-Net (bf16 / fp16: about half its GPU memory and "
                            "time); the DDIM state, h as the mapping network sees it, the mapping network and the "
                            "losses stay fp32. Inversions are cached per precision", str, ("fp32", "bf16", "fp16")),
    "compile": Parameter(False, "torch.compile the frozen U-Net's blocks (GPU runs long enough to repay the "
                         "compilation; the first calls pay it)", bool),
    # sizes
    "n_train_per_class": _size("training images per class"),
    "n_test_per_class": _size("test images per class"),
    "n_recon_images": _size("notebook 01: validation images reconstructed, half per class (at most "
                            "n_val_per_class each)"),
    "hspace_steps": _size("notebook 01: DDIM step counts of the reconstruction curve", list),
    "n_val_per_class": _size("training images per class held out for validation"),
    "n_val_recon_per_class": _size("validation images per class (the first; at most n_val_per_class) reconstructed "
                                   "through the mapping network at each validation for psnr_rec, the floor best.pt "
                                   "must clear (min_recon_psnr)"),
    "ddim_steps": _size("DDIM steps of inversion, training and editing; auto: the smallest of notebook 01's counts "
                        "whose reconstructions reach ddim_steps_min_psnr (what data_prep.folders writes)", int, ("auto",)),
    "ddim_steps_min_psnr": Parameter(30.0, "ddim_steps auto: the mean reconstruction PSNR (dB) asked of notebook 01's "
                                     "step counts", NUMBER),
    "batch_per_class": _size("training images per class in a batch (all processes together)"),
    "train_batches": _size("training batches in all (None at full scale: every epoch in full; 0: the latent warm-up only)"),
    "n_edit_images": _size("notebook 04: test images edited per domain"),
    "validate_every": _size("batches between validations (0: once per epoch)"),
    "ablation_batches": _size("notebook 05: training batches per configuration"),
    "n_ablation_images": _size("notebook 05: test images per domain"),
    "latent_warmup_steps": _size("beyond the paper (faster): updates of the latent terms alone on cached h trajectories "
                                 "before the per-step training (0: off, as in the paper)"),
    "latent_warmup_pool": _size("latent warm-up: training images per class whose h trajectories it draws from "
                                "(generated once, cached beside the inversions)"),
    "ema_decay": _size("beyond the paper (steadier): validate, select and keep an exponential moving average of the "
                       "mapping network's weights, per optimiser step (0: off, the raw weights as in the paper)", NUMBER),
    "ablation_grid": _size("notebook 05: {t_edit: [...], arch: [...], depth: [...]}; None at default and full: "
                           "the paper's grid", dict),
    # the method
    "arch": Parameter("a", "mapping-network architecture of Fig. 8", str, ("a", "b", "c", "d")),
    "depth": Parameter(8, "conv blocks per encoder (the paper: 8 or 12)", int),
    "fusion_depth": Parameter(1, "conv blocks of Fused(C, S) in archs (a) and (c): 1 — one Conv3×3 + LeakyReLU (the "
                              "smallest reading of the paper's \"Fusion Network\"); more add blocks at h's channel count", int),
    "t_edit": Parameter(0, "edit timesteps t >= t_edit (0: every step, 400: the noisy part)", int),
    "t_edit_max": Parameter(None, "beyond the paper: edit only timesteps t < t_edit_max, the noisiest left to the "
                            "original h (None: up to T, as the paper; docs/method.md)", int),
    "reverse_process": Parameter("asymmetric", "asymmetric: the paper's Eq. 4, as Asyrp (predicted x0 from h̃, "
                                 "direction from h) | symmetric: h̃ for the whole DDIM step", str,
                                 ("asymmetric", "symmetric")),
    "lr": Parameter(1e-4, "Adam learning rate of the mapping network", NUMBER),
    "latent_warmup_lr": Parameter(None, "beyond the paper: Adam learning rate of the latent warm-up (None: lr); the "
                                  "per-step training goes on at lr", NUMBER),
    "epochs": Parameter(1, "passes over the training images (train_batches caps the total)", int),
    "lambdas": Parameter(None, "loss weights {term: value}; terms left out weigh 1 (None: every term 1)", dict),
    "kl_temperature": Parameter(1.0, "softmax temperature of the KL term", NUMBER),
    "kl_head": Parameter("learned", "what the KL term (Eq. 8) compares: learned — softmax of a trainable 1×1 head on C "
                         "(which can make the classes alike by itself); none — softmax over pooled C's own channels",
                         str, ("learned", "none")),
    "background_salient": Parameter("own", "how backgrounds are recombined in training: own — Fused(C, S_bg), Eq. 7 as "
                                    "written; zero — Fused(C, 0), Fig. 4 (what removal feeds)", str, ("own", "zero")),
    "consistency_scale": Parameter("raw", "the consistency term's scale: raw — h̃ against h; normalised — both "
                                   "divided by h_scale, as the other latent terms", str, ("raw", "normalised")),
    "kl_pairing": Parameter("batch", "how the KL term pairs the classes: batch — between the two classes' batch-mean "
                            "softmax distributions; pair — per background/target pair, then averaged (the paper's code, "
                            "which also uses kl_temperature 0.5)", str, ("batch", "pair")),
    "classification_loss": Parameter("mean", "the classification term (Eq. 10): mean — one BCE over C_bg, S_bg, C_t, "
                                     "S_t; halves_pos_weight_2 — ½(BCE C_bg + BCE S_bg) + ½(BCE C_t + BCE S_t with "
                                     "pos_weight 2), the paper's code", str, ("mean", "halves_pos_weight_2")),
    "image_term_weighting": Parameter("constant", "the image terms' weight along the trajectory: constant — 1 at "
                                      "every step; cosine — cos((1 − i/(n − 1))·π/2) at step i of n from the noisiest, "
                                      "small where x0 is still a guess (the paper's code)", str, ("constant", "cosine")),
    "common_adversary": Parameter(0.0, "beyond the paper: weight of a gradient-reversal class adversary on C (0: off)",
                                  NUMBER),
    "common_adversary_head": Parameter("pooled", "beyond the paper: what the class adversary on C reads: pooled — a "
                                       "linear layer on C's channel means; conv — a small conv net on C's map, then "
                                       "pooled (it also sees where things are)", str, ("pooled", "conv")),
    "swap_cycle": Parameter(0.0, "beyond the paper: weight of a latent cycle on the adding swap — a background "
                            "given a target's S, encoded again, must give back that S and its own C (MUNIT's latent "
                            "reconstruction), so S's content is written into h̃ (0: off)", NUMBER),
    "edit_sparsity": Parameter(0.0, "beyond the paper: weight of an L1 penalty on the change each edit makes to h — "
                               "a background given a target's S (adding), a target given S = 0 (removing) — on h's "
                               "normalised scale, so S carries only what the edit needs, not the rest of its image (0: off)",
                               NUMBER),
    "edit_sparsity_groups": Parameter("elements", "what edit_sparsity prices: elements — the mean |Δh| (L1); "
                                      "positions — the mean over h's positions of the change's channel norm / √channels "
                                      "(group L1: a change spread over many positions, as a colour, costs more than one "
                                      "kept where the attribute is)", str, ("elements", "positions")),
    "swap_identity": Parameter(0.0, "beyond the paper: weight of the ID loss on the adding swap — the x0 a "
                               "background given a target's S predicts, against that background (per-step phase, "
                               "where the image terms are), so the swap keeps its identity and takes only the "
                               "attribute (0: off)", NUMBER),
    "removal_cycle": Parameter(0.0, "beyond the paper: weight of a cycle on removal — a target's C must equal the "
                               "C of its own removal edit (S = 0), so what only targets show (the beard's style) "
                               "leaves C for S, which a swap carries (0: off)", NUMBER),
    "image_loss_every": Parameter(1, "beyond the paper (faster): image losses (ID, pixel, LPIPS) on every k-th step "
                                  "only (1: every step)", int),
    "edit_form": Parameter("replace", "how an edit uses h̃: replace — h̃ = f(C, α·S′) stands in for h (the paper); "
                           "residual (beyond the paper) — h + f(C, α·S′) − f(C, S): only the change of S edits, the "
                           "mapping network's error in reconstructing h cancels", str, ("replace", "residual")),
    "donor_specificity": Parameter(1.0, "beyond the paper: γ of the adding swap's S′ = S̄ + γ·(S_donor − S̄), S̄ the "
                                   "training targets' mean S at the step (hsep_utils.donor_prior, written by notebook 02): "
                                   "how much of what is the donor's own beyond what every target's S holds the swap "
                                   "carries (1: the paper's swap; 0: the same edit whatever the donor; above 1: more of it)", NUMBER),
    "removal_common_shift": Parameter(0.0, "beyond the paper: λ of a removal's C′ = C + λ·(C̄_bg − C̄_tg), the "
                                      "difference of the two classes' mean C at the step over the latent warm-up's pool "
                                      "of training images (hsep_utils.common_shift, written by notebook 02): a target's C "
                                      "keeps part of its attribute, which no S′ removes (0: the paper's removal)", NUMBER),
    "edit_mask": Parameter(0.0, "beyond the paper: at every edited step the edit changes ε only where its change, "
                           "blurred, reaches this fraction of the image's strongest; elsewhere the original h's ε "
                           "(hsep_utils.diffusion.masked_edit: a mask from the edit itself, no box; 0: off, the paper)",
                           NUMBER),
    "salient_strength": Parameter(1.0, "beyond the paper: α of h̃ = f(C, α·S) when adding, notebooks 03–04 (1: the "
                                  "paper; auto: notebook 02 picks the smallest α of strength_grid whose validation adding SR "
                                  "reaches strength_target_sr with 90 % confidence, on toy presets the oracle SR too; "
                                  "notebook 04 also reports α = 1 when the strength differs)", NUMBER, words=("auto",)),
    "removal_strength": Parameter(1.0, "beyond the paper: β of S′ = (1 − β)·S when removing, notebooks 03–04 (1: "
                                  "S = 0, the paper; above 1 past it; auto: as salient_strength's, on the validation "
                                  "removal SR; notebook 04 also reports β = 1 when the strength differs)", NUMBER,
                                  words=("auto",)),
    "strength_target_sr": Parameter(0.9, "salient_strength / removal_strength auto: the validation SR asked for",
                                    NUMBER),
    "strength_grid": Parameter(None, "salient_strength / removal_strength auto: the strengths searched (None: "
                               "1, 1.25, 1.5, 2, 2.5, 3, hsep_utils.strength.STRENGTH_GRID)", list),
    # real datasets and bring-your-own folders (hsep_utils/real_data.py); None: the documented default
    "annotations": Parameter(None, "ffhq: ffhq-features-dataset json/ folder; celebahq: "
                             "CelebAMask-HQ-attribute-anno.txt", str),
    "images": Parameter(None, "ffhq: images1024x1024/ (sub-folders 00000 … 69000, or flat); celebahq: CelebA-HQ-img/",
                        str),
    "glasses_target": Parameter(None, "ffhq glasses: kinds counted as target (None: [ReadingGlasses, Sunglasses]; "
                                "background NoGlasses)", list),
    "age_young": Parameter(None, "ffhq age: [min, max] years of the background class (None: [18, 30])", list),
    "age_old": Parameter(None, "ffhq age: [min, max] years of the target class (None: [50, 120])", list),
    "background_dir": Parameter(None, "folders: images of the background class", str),
    "target_dir": Parameter(None, "folders: images of the target class", str),
    "background_test_dir": Parameter(None, "folders: optional held-out background images (with target_test_dir)", str),
    "target_test_dir": Parameter(None, "folders: optional held-out target images (with background_test_dir)", str),
    "test_fraction": Parameter(None, "folders without test folders: share of each class held out (None: 0.2)", NUMBER),
    # the metrics' weights
    "facenet_weights": Parameter(None, "ID: facenet-pytorch vggface2 file or its folder (None: the torch cache)", str),
    "inception_weights": Parameter(None, "FID: clean-fid inception-2015-12-05.pt or its folder (None: clean-fid's "
                                   "cache)", str),
    "arcface_weights": Parameter(None, "real presets' ID metric: ArcFace IR-SE50 model_ir_se50.pth or its folder (None: "
                                 "models/model_ir_se50.pth; absent: facenet scores ID, the loss's network, and the "
                                 "table says so)", str),
}

DEFAULTS: dict = {k: p.default for k, p in PARAMETERS.items()}
"""Every parameter's default: what a preset that sets nothing runs with."""


def check(params: dict, where: str) -> None:
    """Raise a ``ValueError`` starting with ``where`` for an unknown key (listing the known ones with
    their meaning) or a value of the wrong type or not among a parameter's choices."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        allowed = "\n".join(f"  {k}: {p.meaning}" for k, p in PARAMETERS.items())
        raise ValueError(f"{where}: unknown keys {unknown}. Allowed keys:\n{allowed}")
    scales = params.get("scales") or {}
    if not isinstance(scales, dict) or any(k not in SCALES or not isinstance(v, dict) for k, v in scales.items()):
        raise ValueError(f"{where}: scales must map a scale ({', '.join(SCALES)}) to {{key: value}}, got {scales!r}")
    for scale, sizes in scales.items():
        unknown = sorted(set(sizes) - set(SCALES[scale]))
        if unknown:
            raise ValueError(f"{where}: scales.{scale} sets {unknown}, not sizes of a scale "
                             f"(allowed: {', '.join(SCALES[scale])})")
    given = [(k, k, v) for k, v in params.items()] + [(k, f"scales.{n}.{k}", v) for n, s in scales.items()
                                                       for k, v in s.items()]
    for key, name, value in given:
        p = PARAMETERS[key]
        if value is None:
            continue
        if p.choices is not None and value not in p.choices:
            raise ValueError(f"{where}: {name} {value!r} is not one of {list(p.choices)}")
        if value in p.words or p.kind is None:
            continue
        if (isinstance(value, bool) and p.kind is not bool) or not isinstance(value, p.kind):
            kind = {int: "an integer", NUMBER: "a number", list: "a list", dict: "a mapping", str: "a string",
                    bool: "true or false"}[p.kind]
            raise ValueError(f"{where}: {name} must be {' or '.join([kind, *p.words])}, got {value!r} "
                             f"({key}: {p.meaning})")


def with_scale(params: dict) -> dict:
    """Fill every ``None`` size from the preset's scale: the preset's own ``scales[scale]`` first,
    then the scale's. A preset's sizes for one scale stay out of the others (``-p scale smoke``
    stays a smoke run)."""
    scale = params.get("scale", DEFAULTS["scale"])
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} is not one of {list(SCALES)}")
    sizes = {**SCALES[scale], **((params.get("scales") or {}).get(scale) or {})}
    return {**params, **{k: v for k, v in sizes.items() if k not in params or params[k] is None}}


def complete(params: dict) -> dict:
    """``params`` over every default, sizes filled from the scale: what a notebook runs with."""
    return with_scale({**DEFAULTS, **params})


def is_asymmetric(params: dict) -> bool:
    """The preset's ``reverse_process`` (default: the paper's asymmetric Eq. 4)."""
    return (params.get("reverse_process") or DEFAULTS["reverse_process"]) == "asymmetric"


def is_residual(params: dict) -> bool:
    """The preset's ``edit_form`` (default: the paper's h̃ in place of h)."""
    return (params.get("edit_form") or DEFAULTS["edit_form"]) == "residual"


def edit_settings(params: dict) -> dict:
    """The preset's keyword arguments of ``edit`` / ``swap_salient`` / ``edit_pairs`` beside the strengths
    and the pool's means (``donor_prior``, ``common_shift``): ``t_edit_max``, ``residual`` and ``edit_mask``."""
    return dict(t_edit_max=params.get("t_edit_max"), residual=is_residual(params),
                edit_mask=float(params.get("edit_mask") or 0.0))


def describe() -> str:
    """Every parameter as ``name = default  # meaning [choices]``, and the sizes of each scale."""
    lines = [f"{k} = {p.default!r}  # {p.meaning}" + (f" [{' | '.join(map(str, p.choices))}]" if p.choices else "")
             for k, p in PARAMETERS.items()]
    lines += ["", "scales (the sizes a None takes):"] + [f"  {s}: {sizes}" for s, sizes in SCALES.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
    sys.exit(0)
