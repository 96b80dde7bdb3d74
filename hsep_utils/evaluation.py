"""The quantitative tables (notebook 04, the paper's Tables 1–4): one row per domain.

Domain x: background test images given the attribute (S from a target); domain y: target test
images stripped of it (S = 0). MSE, PSNR, LPIPS and ID compare each edited image with its own
original; FID and KID compare the edited images with real images of the opposite class (the table
says how many of each: FID is biased upwards on few images, KID is not); SR is Eq. 14
counted like the paper's code. Toy presets add what only a world with known factors allows:
oracle SR and the counterfactual MSE ratio against the exact counterfactual, and a Fréchet
distance on the toy attribute classifier's features (``fd_toy``; not FID: not Inception).
A metric whose weights are absent is the cell ``unavailable`` with its reason as a footnote,
never a number from a random network.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from .classifier import edit_success
from .io import save_dataframe, write_text
from .metrics import Unavailable, lpips_per_image, mse_per_image, psnr_per_image, to_unit
from .toy import ATTRIBUTES, ToyFactors, attribute_region

UNAVAILABLE = "unavailable"
LOCAL_ATTRIBUTES = ("glasses", "smile")  # the toy attributes with a pixel region (toy.attribute_region)
COLUMNS = ("domain", "lpips", "mse", "psnr", "id", "fid", "kid", "sr")
TOY_COLUMNS = ("oracle_sr", "cf_mse_ratio", "fd_toy", "oracle_sr_donor", "donor_match", "psnr_outside", "identity_kept")
COUNT_COLUMNS = ("n", "sr_counted", "n_reference")
HEADERS = {  # Markdown header: better-direction arrow and name
    "lpips": "↓ LPIPS", "mse": "↓ MSE", "psnr": "↑ PSNR (dB)", "id": "↑ ID", "fid": "↓ FID", "kid": "↓ KID", "sr": "↑ SR",
    "oracle_sr": "↑ oracle SR", "cf_mse_ratio": "↓ CF MSE ratio", "fd_toy": "↓ FD (toy classifier features)",
    "oracle_sr_donor": "↑ oracle SR (donor's)", "donor_match": "↑ donor match", "psnr_outside": "↑ PSNR outside (dB)",
    "identity_kept": "↑ identity kept",
}
FORMATS = {"lpips": ".3f", "mse": ".4f", "psnr": ".2f", "id": ".3f", "fid": ".2f", "kid": ".4f", "sr": ".3f", "oracle_sr": ".3f",
           "cf_mse_ratio": ".3f", "fd_toy": ".3f", "oracle_sr_donor": ".3f", "donor_match": ".3f", "psnr_outside": ".2f",
           "identity_kept": ".3f"}
DOMAINS = {"x": "x (background + attribute)", "y": "y (target − attribute)"}


def _zero_roundoff(eigenvalues: np.ndarray) -> np.ndarray:
    return np.where(eigenvalues > 1e-10 * max(eigenvalues.max(), 0.0), eigenvalues, 0.0)


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows = samples):
    ‖μa − μb‖² + tr Σa + tr Σb − 2 tr (Σa Σb)^½.

    tr (Σa Σb)^½ is taken as Σ √λ of the symmetric PSD matrix Σa^½ Σb Σa^½ (same eigenvalues), so a
    rank-deficient covariance — fewer images than feature dimensions, as in small test sets — gives
    a finite value with no eps or complex round-off; eigenvalues below 1e-10 of the largest, which
    are round-off of zeros, count as zero."""
    a, b = (np.asarray(f, np.float64) for f in (feats_a, feats_b))
    a, b = (f.reshape(len(f), -1) for f in (a, b))
    if len(a) < 2 or len(b) < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need ≥ 2 samples of equal dimension in each set, got {a.shape} and {b.shape}")
    sa, sb = (np.atleast_2d(np.cov(f, rowvar=False)) for f in (a, b))
    w, v = np.linalg.eigh(sa)
    root_a = (v * np.sqrt(_zero_roundoff(w))) @ v.T
    m = root_a @ sb @ root_a
    tr_sqrt = np.sqrt(_zero_roundoff(np.linalg.eigvalsh((m + m.T) / 2))).sum()
    diff = a.mean(0) - b.mean(0)
    return max(0.0, float(diff @ diff + np.trace(sa) + np.trace(sb) - 2 * tr_sqrt))  # ≥ 0 but for round-off


@torch.no_grad()
def identity_similarity(embed: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                        batch_size: int = 64) -> torch.Tensor:
    """ID metric per image: cosine between the identity embeddings of a[i] and b[i]."""
    out = [torch.cosine_similarity(embed(x).flatten(1), embed(y).flatten(1), dim=1).cpu()
           for x, y in zip(a.split(batch_size), b.split(batch_size))]
    return torch.cat(out)


@torch.no_grad()
def identity_kept(embed: Callable[[torch.Tensor], torch.Tensor], edited: torch.Tensor, original: torch.Tensor,
                  batch_size: int = 64) -> torch.Tensor:
    """Per edit: whether ``embed`` still picks the edit's own original out of all the originals
    (nearest by cosine). What a global edit (age, gender) keeps of who the face is, where no box
    separates the attribute from the rest (a local one: ``psnr_outside``)."""
    def unit(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.nn.functional.normalize(embed(b).flatten(1), dim=1).cpu() for b in x.split(batch_size)])

    return (unit(edited) @ unit(original).T).argmax(1) == torch.arange(len(edited))


def toy_regions(rows: pd.DataFrame, attribute: str, size: int) -> list[tuple[int, int, int, int]] | None:
    """Pixel boxes (x0, y0, x1, y1) of a local attribute for each toy manifest row; None for a
    global attribute (age, gender), which is scored over the whole image."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown toy attribute {attribute!r}; known: {', '.join(ATTRIBUTES)}")
    if attribute not in LOCAL_ATTRIBUTES:
        return None
    return [attribute_region(ToyFactors.from_mapping(r), attribute, size) for _, r in rows.iterrows()]


def _region_mse(a: torch.Tensor, b: torch.Tensor, regions, outside: bool = False) -> torch.Tensor:
    """Per-image MSE on pixels in [0, 1], inside (or ``outside``) each image's box when ``regions``
    is given."""
    if regions is None:
        return mse_per_image(a, b)
    if len(regions) != len(a):
        raise ValueError(f"{len(regions)} regions for {len(a)} images")
    mask = torch.full((len(a), 1, *a.shape[-2:]), float(outside), device=a.device)
    for m, (x0, y0, x1, y1) in zip(mask, regions):
        m[:, y0:y1, x0:x1] = float(not outside)
    err = (to_unit(a) - to_unit(b)).pow(2) * mask
    return err.flatten(1).sum(1) / (mask.flatten(1).sum(1) * a.shape[1])


def psnr_outside(a: torch.Tensor, b: torch.Tensor, regions: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """Per-image PSNR (dB, pixels in [0, 1]) outside each image's box: what an edit of a local
    attribute keeps of the rest of the image."""
    return 10 * torch.log10(1 / _region_mse(a, b, regions, outside=True).clamp_min(1e-10))


def donor_transfer(edited: torch.Tensor, original: torch.Tensor, counterfactual: torch.Tensor,
                   donor_counterfactual: torch.Tensor, regions=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (bool), for adding by swap: ``match`` — the edit's nearest counterfactual of the set
    is the one with the donor's own salient sub-factors (e.g. the glasses' style), i.e. S carried
    them; ``success`` — the donor's oracle: the attribute was added (``oracle_success``) and matches."""
    match = (nearest_counterfactual(edited, counterfactual) == donor_counterfactual).flatten(1).all(1)
    return match, oracle_success(edited, original, counterfactual, regions) & match


def nearest_counterfactual(edited: torch.Tensor, counterfactual: torch.Tensor) -> torch.Tensor:
    """Per image, the one of its true counterfactuals (K, N, C, H, W: ``toy_counterfactual_set``)
    nearest (MSE) the edit: a factor the input does not show (the style of glasses being
    added) no edit can read off it, so each of its values is a right edit. One counterfactual per
    image (N, C, H, W) passes through."""
    if counterfactual.dim() == edited.dim():
        return counterfactual
    err = torch.stack([mse_per_image(edited, c) for c in counterfactual])
    return counterfactual[err.argmin(0), torch.arange(len(edited))]


def oracle_success(edited: torch.Tensor, original: torch.Tensor, counterfactual: torch.Tensor,
                   regions: list[tuple[int, int, int, int]] | None = None) -> torch.Tensor:
    """Per image (bool): the edit is closer (MSE) to the true counterfactual (the nearest, given a
    set) than to the original, inside the attribute's box for local attributes, else over the image.
    (Outside the box of a toy attribute original and counterfactuals agree, so there the box rescales
    both MSEs alike, and the nearest counterfactual is the nearest inside it.)"""
    counterfactual = nearest_counterfactual(edited, counterfactual)
    return _region_mse(edited, counterfactual, regions) < _region_mse(edited, original, regions)


def cf_mse_ratio(edited: torch.Tensor, original: torch.Tensor, counterfactual: torch.Tensor) -> float:
    """mean MSE(edit, counterfactual) / mean MSE(input, counterfactual), with each edit's nearest
    counterfactual given a set: < 1 means the edit moved toward the truth, 0 is a perfect edit, 1 is
    no better than not editing."""
    counterfactual = nearest_counterfactual(edited, counterfactual)
    return (mse_per_image(edited, counterfactual).mean() / mse_per_image(original, counterfactual).mean()).item()


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


@torch.no_grad()
def inception_features(x: torch.Tensor, extractor: nn.Module, batch_size: int = 32) -> np.ndarray:
    """clean-fid's features: images in [-1, 1] quantised to uint8, resized to 299 px with clean-fid's
    own "clean" resizer (PIL bicubic in float), fed in [0, 255]."""
    from cleanfid.resize import build_resizer

    resize, dev = build_resizer("clean"), _device(extractor)
    out = []
    for chunk in x.split(batch_size):
        u8 = (to_unit(chunk) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        batch = torch.stack([torch.from_numpy(resize(img)).permute(2, 0, 1) for img in u8])
        out.append(extractor(batch.to(dev)).cpu().numpy())
    return np.concatenate(out)


def kernel_distance(feats_a: np.ndarray, feats_b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> float:
    """KID: the unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³, averaged
    over ``subsets`` random subsets of min(``subset_size``, both set sizes) rows of each (as
    clean-fid's ``kernel_distance``, but with its own seeded generator: the same sets give the same
    number). Unbiased, unlike FID, so it stays comparable on small sets."""
    a, b = (np.asarray(f, np.float64).reshape(len(f), -1) for f in (feats_a, feats_b))
    m, d = min(len(a), len(b), subset_size), a.shape[1]
    if m < 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need ≥ 2 samples of equal dimension in each set, got {a.shape} and {b.shape}")
    rng, total = np.random.default_rng(seed), 0.0
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        total += ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    return float(total / subsets)


def inception_distances(edited: torch.Tensor, reference: torch.Tensor, extractor: nn.Module | Unavailable,
                        batch_size: int = 32) -> dict | Unavailable:
    """FID and KID (clean-fid's Inception features, our Fréchet and kernel distances) between edited
    images and real images of the opposite class; an absent Inception passes its ``Unavailable``
    through."""
    if isinstance(extractor, Unavailable):
        return extractor
    a, b = inception_features(edited, extractor, batch_size), inception_features(reference, extractor, batch_size)
    return dict(fid=frechet_distance(a, b), kid=kernel_distance(a, b))


@torch.no_grad()
def classifier_features(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The toy attribute classifier's pooled features (``SmallCNN.embed``), for ``fd_toy``."""
    dev = _device(model)
    return torch.cat([model.embed(b.to(dev)).cpu() for b in x.split(batch_size)]).numpy()


def metric_models(dataset_kind: str, device: str | torch.device = "cpu", facenet_weights: str | Path | None = None,
                  inception_weights: str | Path | None = None, arcface_weights: str | Path | None = None) -> dict:
    """The pretrained networks ``domain_metrics`` takes (``lpips``, ``id_embed``, ``inception``), each
    loaded from local files or ``Unavailable``, and ``judges``: one line per metric saying which
    network scores it (for the table's notes). Judges apart from the losses where their weights are
    there: ID on toy presets the second toy identity encoder (``identity.JUDGE_OPTIONS``), on real
    ones ArcFace IR-SE50 (``arcface``; without ``model_ir_se50.pth``: facenet, the ID loss's own
    network, and the note says so); LPIPS over VGG (without torchvision's VGG-16: AlexNet, the loss's)."""
    from .arcface import arcface_embedder
    from .identity import toy_identity_embedder
    from .weights import facenet_embedder, inception_extractor, lpips_model

    judges = []
    lpips = lpips_model(device, "vgg")  # the loss's AlexNet is loaded only when VGG is absent
    if not isinstance(lpips, Unavailable):
        judges.append("LPIPS: VGG (the loss uses AlexNet)")
    else:
        vgg_missing, lpips = lpips.reason, lpips_model(device)
        if not isinstance(lpips, Unavailable):
            judges.append(f"LPIPS: AlexNet, the LPIPS loss's own network ({vgg_missing})")
    if dataset_kind == "toy":
        id_embed = toy_identity_embedder(device, judge=True)
        if not isinstance(id_embed, Unavailable):
            judges.append("ID: the second toy identity encoder (models/toy-identity-judge), not the ID loss's")
    else:
        id_embed = arcface_embedder(device, arcface_weights)  # facenet is loaded only when ArcFace is absent
        if not isinstance(id_embed, Unavailable):
            judges.append("ID: ArcFace IR-SE50, as the paper's code (the loss uses facenet)")
        else:
            arcface_missing, id_embed = id_embed.reason, facenet_embedder(device, facenet_weights)
            if not isinstance(id_embed, Unavailable):
                judges.append(f"ID: facenet-pytorch VGGFace2, the ID loss's own network ({arcface_missing})")
    if isinstance(id_embed, Unavailable):
        judges.append(f"ID: unavailable ({id_embed.reason})")
    return dict(lpips=lpips, id_embed=id_embed, inception=inception_extractor(device, inception_weights), judges=judges)


def loss_models(dataset_kind: str, device: str | torch.device = "cpu", facenet_weights: str | Path | None = None) -> dict:
    """The networks the image loss terms use (``lpips``, ``id_embed``): the toy identity encoder of the
    ID loss (not the metric's) on toy presets, facenet on real ones; ``Unavailable`` when absent."""
    from .identity import toy_identity_embedder
    from .weights import facenet_embedder, lpips_model

    id_embed = toy_identity_embedder(device) if dataset_kind == "toy" else facenet_embedder(device, facenet_weights)
    return dict(lpips=lpips_model(device), id_embed=id_embed)


def _with(model, compute: Callable):
    """A metric computed with ``model``; a missing (None) or ``Unavailable`` model passes through."""
    return model if model is None or isinstance(model, Unavailable) else compute(model)


def domain_metrics(domain: str, original: torch.Tensor, edited: torch.Tensor, opposite_real: torch.Tensor,
                   classifier: nn.Module, original_is_target: bool, lpips: nn.Module | Unavailable | None = None,
                   id_embed: Callable | Unavailable | None = None, inception: nn.Module | Unavailable | None = None,
                   counterfactual: torch.Tensor | None = None,
                   regions: list[tuple[int, int, int, int]] | None = None, batch_size: int = 64,
                   donor_counterfactual: torch.Tensor | None = None) -> dict:
    """One table row for one domain (``"x"``: backgrounds given the attribute, ``original_is_target``
    False; ``"y"``: targets stripped of it, True). ``opposite_real`` are real images of the class
    the edits aim at (FID, fd_toy). Passing ``counterfactual`` (toy presets; one per image or a set,
    ``toy_counterfactual_set``) adds ``oracle_sr``, ``cf_mse_ratio`` and ``fd_toy``; ``regions``
    (``toy_regions``) confines oracle SR to a local attribute's box and adds ``psnr_outside`` (a global
    attribute: ``identity_kept``, with the ID network); with
    ``donor_counterfactual`` (adding by swap: ``toy_donor_counterfactuals``) and an attribute whose
    counterfactuals differ in sub-factors, ``donor_match`` and ``oracle_sr_donor``
    (``donor_transfer``); where these do not apply the cell says why. A network that is
    ``Unavailable`` (or not given) makes its cell ``unavailable`` with the reason in ``row["reasons"]``.
    Every network sees ``batch_size`` images at a time."""
    if not len(original) == len(edited) > 0:
        raise ValueError(f"{domain}: {len(original)} originals and {len(edited)} edited images; need equal, non-zero")
    row: dict = dict(domain=domain)
    reasons: dict[str, str] = {}

    def put(name: str, value) -> None:
        if value is None:
            value = Unavailable(f"no {name} network was given")
        if isinstance(value, Unavailable):
            row[name], reasons[name] = UNAVAILABLE, value.reason
        else:
            row[name] = float(value)

    def put_all(names: tuple[str, ...], values) -> None:
        """Cells computed together: a dict of them, or one missing network / reason for all."""
        for name in names:
            put(name, values if values is None or isinstance(values, Unavailable) else values[name])

    put("lpips", _with(lpips, lambda m: lpips_per_image(m, edited, original, batch_size).mean()))
    put("mse", mse_per_image(edited, original).mean())
    put("psnr", psnr_per_image(edited, original).mean())
    put("id", _with(id_embed, lambda f: identity_similarity(f, edited, original, batch_size).mean()))
    put_all(("fid", "kid"), _with(inception, lambda m: inception_distances(edited, opposite_real, m, batch_size)))
    row["sr"], row["sr_counted"] = edit_success(classifier, original, edited, original_is_target, batch_size)
    if counterfactual is not None:
        put("oracle_sr", oracle_success(edited, original, counterfactual, regions).float().mean())
        put("cf_mse_ratio", cf_mse_ratio(edited, original, counterfactual))
        put("fd_toy", frechet_distance(classifier_features(classifier, edited, batch_size),
                                       classifier_features(classifier, opposite_real, batch_size)))
        if donor_counterfactual is None:
            transfer = Unavailable("not applicable: no donor (removal sets S = 0)")
        elif counterfactual.dim() == edited.dim() or len(counterfactual) == 1:
            transfer = Unavailable("not applicable: the attribute has no salient sub-factor in this toy world")
        else:
            match, success = donor_transfer(edited, original, counterfactual, donor_counterfactual, regions)
            transfer = dict(oracle_sr_donor=success.float().mean(), donor_match=match.float().mean())
        put_all(("oracle_sr_donor", "donor_match"), transfer)
        put("psnr_outside", Unavailable("not applicable: a global attribute has no box") if regions is None
            else psnr_outside(edited, original, regions).mean())
        put("identity_kept", Unavailable("not applicable: a local attribute (the rest of the image: psnr_outside)")
            if regions is not None else _with(id_embed, lambda f: identity_kept(f, edited, original, batch_size).float().mean()))
    row["n"], row["n_reference"] = len(edited), len(opposite_real)
    row["reasons"] = reasons
    return row


def _cell(value, fmt: str) -> str:
    if isinstance(value, str):
        return value
    return "nan" if math.isnan(value) else format(value, fmt)


def write_table(rows: list[dict], csv_path: str | Path, md_path: str | Path, title: str,
                notes: list[str] | tuple[str, ...] = ()) -> str:
    """Write rows of ``domain_metrics`` as CSV and as a Markdown table laid out like the paper's
    (one row per domain, arrows for the better direction, footnotes for unavailable metrics and
    their reasons); returns the Markdown.

    CSV columns: domain; lpips, mse, psnr, id, fid, kid, sr (MSE/PSNR/LPIPS/ID: edited vs its
    original, pixels in [0, 1]; FID, KID: edited vs the ``n_reference`` real images of the opposite
    class; SR: Eq. 14 over the ``sr_counted`` images whose original the classifier gets right); on toy
    presets oracle_sr, cf_mse_ratio, fd_toy, oracle_sr_donor, donor_match, psnr_outside (local attributes),
    identity_kept (global ones); n (edited images); sr_counted; n_reference;
    unavailable_reasons (``metric: reason; …``).
    A metric that could not be computed holds the string ``unavailable``."""
    save_dataframe(results_frame(rows), csv_path)
    md = markdown_table(rows, title, notes)
    write_text(md_path, md)
    return md


def _metric_columns(rows: list[dict]) -> list[str]:
    return [c for c in COLUMNS[1:] + TOY_COLUMNS if any(c in r for r in rows)]


def results_frame(rows: list[dict]) -> pd.DataFrame:
    """The CSV table of ``write_table``: one row per ``domain_metrics`` row."""
    metrics = _metric_columns(rows)
    reasons = {r["domain"]: r.get("reasons", {}) for r in rows}
    table = pd.DataFrame([{c: r.get(c, UNAVAILABLE) for c in ("domain", *metrics, *COUNT_COLUMNS)} for r in rows])
    table["unavailable_reasons"] = ["; ".join(f"{m}: {why}" for m, why in reasons[r["domain"]].items()) for r in rows]
    return table


def markdown_table(rows: list[dict], title: str, notes: list[str] | tuple[str, ...] = ()) -> str:
    """The Markdown table of ``write_table``, laid out like the paper's."""
    metrics = _metric_columns(rows)
    reasons = {r["domain"]: r.get("reasons", {}) for r in rows}
    footnotes: dict[str, int] = {}  # reason → footnote number, shared by cells with the same reason
    lines = [f"### {title}", "", "| domain | " + " | ".join(HEADERS[m] for m in metrics) + " |",
             "|---|" + "---:|" * len(metrics)]
    for r in rows:
        cells = []
        for m in metrics:
            why = reasons[r["domain"]].get(m)
            if why is None:
                cells.append(_cell(r.get(m, UNAVAILABLE), FORMATS[m]))
            else:
                k = footnotes.setdefault(why, len(footnotes) + 1)
                cells.append(f"{UNAVAILABLE} [{k}]")
        lines.append(f"| {DOMAINS.get(r['domain'], r['domain'])} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"[{k}] {text}" for text, k in footnotes.items()]
    lines += ["", "Images: " + "; ".join(
        f"{r['domain']} {r['n']} (SR over the {r['sr_counted']} whose original the classifier gets right"
        + (f"; FID, KID and FD against {r['n_reference']} real images of the other class" if "n_reference" in r else "")
        + ")" for r in rows) + "."]
    lines += [f"- {n}" for n in notes]
    md = "\n".join(lines).rstrip() + "\n"
    return md


def preset_metric_models(params: dict, device) -> dict:
    """``metric_models`` for a preset: weight paths in the preset are relative to the repository."""
    from .weights import preset_weight_paths

    paths = preset_weight_paths(params)
    return metric_models(params["dataset_kind"], device, paths["facenet_weights"], paths["inception_weights"],
                         paths["arcface_weights"])


def preset_loss_models(params: dict, device) -> dict:
    """``loss_models`` for a preset."""
    from .weights import preset_weight_paths

    return loss_models(params["dataset_kind"], device, preset_weight_paths(params)["facenet_weights"])
