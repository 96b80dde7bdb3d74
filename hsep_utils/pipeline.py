"""What notebooks 02–03 run for a preset: data in memory, the attribute classifier, training with
validation swap success, and the edits of held-out images."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .classifier import SMALL_CNN_RECORD, build_classifier, describe, predict, swap_success, train_classifier
from .datasets import CLASSES, load_images, prepare_dataset
from .diffusion import Diffusion
from .distributed import ranks
from .edit import swap_salient
from .io import save_figure, save_torch
from .losses import LOSS_TERMS
from .metrics import Unavailable
from .mapping import MappingNetwork
from .train import InversionCache, TrainConfig, train_mapping


@dataclass
class Split:
    """One class's images of one split, with their manifest rows and cache keys."""

    rows: pd.DataFrame
    x: torch.Tensor

    @property
    def keys(self) -> list[str]:
        return list(self.rows["file"])


def load_preset_data(params: dict, image_size: int, n_val_per_class: int = 32) -> dict[str, Split]:
    """``train_bg``, ``train_tg``, ``val_bg``, ``val_tg``, ``test_bg``, ``test_tg``: the last
    ``n_val_per_class`` training images of each class are held out for validation."""
    manifest, dataset_dir = prepare_dataset(params, progress=False)
    out = {}
    for cls, tag in zip(CLASSES, ("bg", "tg")):
        for split in ("train", "test"):
            rows = manifest[(manifest["split"] == split) & (manifest["class"] == cls)].reset_index(drop=True)
            if split == "train":
                if len(rows) <= n_val_per_class:
                    raise ValueError(f"{dataset_dir}: {len(rows)} {cls} training images, need more than "
                                     f"n_val_per_class={n_val_per_class}")
                parts = {"train": rows.iloc[:-n_val_per_class], "val": rows.iloc[-n_val_per_class:]}
            else:
                parts = {"test": rows}
            for name, r in parts.items():
                r = r.reset_index(drop=True)
                out[f"{name}_{tag}"] = Split(r, load_images(dataset_dir, r["file"], image_size))
    return out


def fit_attribute_classifier(data: dict[str, Split], seed: int = 0, progress: bool = True, device=None):
    """The SR classifier on the training images (``classifier.build_classifier``: SmallCNN below
    64 px, ResNet-18 above, from ImageNet weights when present; says which); on CUDA when available.
    Returns (model, test accuracy); ``model.record`` says what it is."""
    x = torch.cat([data["train_bg"].x, data["train_tg"].x])
    y = torch.cat([torch.zeros(len(data["train_bg"].x)), torch.ones(len(data["train_tg"].x))])
    torch.manual_seed(seed)
    model, record = build_classifier(x.shape[-1])
    print(f"attribute classifier: {describe(record)}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = train_classifier(model.to(device), x, y, seed=seed, progress=progress)
    model.record = record
    correct = torch.cat([~predict(model, data["test_bg"].x), predict(model, data["test_tg"].x)])
    return model, correct.float().mean().item()


def edit_pairs(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, bg: Split, tg: Split,
               n_steps: int, t_edit: int, n: int | None = None,
               asymmetric: bool = True, alpha: float = 1.0,
               remove: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Background i takes target i's S (times ``alpha``); target i takes S = 0 (with ``remove``
    False: only adding, the second is None). Under data parallelism each process edits its share and
    every process gets all edits back."""
    n = min(len(bg.x), len(tg.x)) if n is None else n
    r = ranks()
    part = r.share(n)
    if part.start == part.stop:  # more processes than images
        return r.gather(bg.x[:0]), r.gather(tg.x[:0]) if remove else None
    keys_bg, keys_tg = bg.keys[:n][part], tg.keys[:n][part]
    xT_bg, xT_tg = cache(keys_bg, bg.x[:n][part]), cache(keys_tg, tg.x[:n][part])
    added, removed = swap_salient(diffusion, net.eval(), xT_bg, xT_tg, n_steps, t_edit, alpha, asymmetric, remove)
    return r.gather(added.cpu()), r.gather(removed.cpu()) if remove else None


def reconstruction_psnr(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, bg: Split, tg: Split,
                        n_steps: int, t_edit: int, asymmetric: bool = True) -> float:
    """Mean PSNR (dB) of both classes' images reconstructed through the mapping network (own C and
    S); split across processes under data parallelism."""
    from .edit import edit
    from .metrics import psnr_per_image

    r = ranks()
    x, keys = torch.cat([bg.x, tg.x]), bg.keys + tg.keys
    is_target = torch.arange(len(x)) >= len(bg.x)
    part = r.share(len(x))
    rec = x[:0]
    if part.start < part.stop:
        rec = edit(diffusion, net.eval(), cache(keys[part], x[part]), is_target[part], n_steps, "reconstruct",
                   t_edit, asymmetric=asymmetric).cpu()
    return psnr_per_image(r.gather(rec), x).mean().item()


def train_preset(diffusion: Diffusion, data: dict[str, Split], cfg: TrainConfig, out_dir: str | Path,
                 classifier, inversion_dir: Path | None = None, lpips=None, id_embed=None,
                 progress: bool = True) -> MappingNetwork:
    """Train on ``train_*``; each validation measures swap success and reconstruction PSNR on ``val_*``."""
    cache = InversionCache(diffusion, cfg.n_steps, inversion_dir)

    def validate(net: MappingNetwork) -> dict:
        val_bg, val_tg = data["val_bg"], data["val_tg"]
        added, removed = edit_pairs(diffusion, net, cache, val_bg, val_tg, cfg.n_steps, cfg.t_edit,
                                    asymmetric=cfg.asymmetric)
        return {**swap_success(classifier, val_bg.x, val_tg.x, added, removed),
                "psnr_rec": reconstruction_psnr(diffusion, net, cache, val_bg, val_tg, cfg.n_steps, cfg.t_edit,
                                                cfg.asymmetric)}

    return train_mapping(diffusion, data["train_bg"].x, data["train_tg"].x, data["train_bg"].keys,
                         data["train_tg"].keys, cfg, out_dir, validate=validate, id_embed=id_embed, lpips=lpips,
                         inversion_dir=inversion_dir, progress=progress)


STRENGTH_GRID = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
"""The salient strengths α that ``salient_strength: auto`` chooses from."""
STRENGTH_TARGET_SR = 0.9
"""The validation adding SR ``salient_strength: auto`` asks for when the preset names none."""
STRENGTH_CONFIDENCE = 0.9
"""The one-sided confidence with which the chosen α's validation SR must clear the target."""


def choose_salient_strength(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, data: dict[str, Split],
                            params: dict, classifier, out_csv: str | Path,
                            grid: tuple[float, ...] = STRENGTH_GRID, confidence: float = STRENGTH_CONFIDENCE) -> float:
    """Beyond the paper (α = 1): the salient strength α of h̃ = f(C, α·S′) for adding, chosen on the
    validation split as the smallest α of ``grid`` whose adding SR reaches ``strength_target_sr``
    with ``confidence`` (``metrics.rate_lower_bound`` of the SR on the images counted: the first α
    whose measured SR crosses the bar is the one most likely to fall below it on new images) — on
    toy presets both SRs, the classifier's and the oracle's, since the exact counterfactual says
    whether the attribute was really added. Without one that does: the smallest α of the best bound
    (the lower of the two on toy presets). The smallest, because a stronger S moves the image
    further from its original. Removal (S = 0) does not depend on α. Writes ``out_csv`` (alpha,
    sr_add, sr_counted, oracle_sr on toy presets, psnr, their bounds ``*_low``, chosen) and returns
    the chosen α."""
    from .classifier import edit_success
    from .io import save_dataframe
    from .metrics import psnr_per_image, rate_lower_bound

    bg, tg = data["val_bg"], data["val_tg"]
    n = min(len(bg.x), len(tg.x))
    toy = params.get("dataset_kind") == "toy"
    if toy:
        from .datasets import toy_counterfactual_set
        from .evaluation import oracle_success, toy_regions

        head = bg.rows.head(n)
        cf = toy_counterfactual_set(head, params["attribute"], bg.x.shape[-1])
        regions = toy_regions(head, params["attribute"], bg.x.shape[-1])
    rows = []
    for alpha in grid:
        added, _ = edit_pairs(diffusion, net, cache, bg, tg, params["ddim_steps"], params["t_edit"], n,
                              is_asymmetric(params), alpha, remove=False)
        sr, counted = edit_success(classifier, bg.x[:n], added, original_is_target=False)
        row = dict(alpha=alpha, sr_add=sr, sr_counted=counted)
        if toy:
            row["oracle_sr"] = oracle_success(added, bg.x[:n], cf, regions).float().mean().item()
        rows.append({**row, "psnr": psnr_per_image(added, bg.x[:n]).mean().item()})
    table = pd.DataFrame(rows)
    table["sr_add_low"] = [rate_lower_bound(sr, c, confidence) for sr, c in zip(table["sr_add"], table["sr_counted"])]
    if toy:
        table["oracle_sr_low"] = [rate_lower_bound(sr, n, confidence) for sr in table["oracle_sr"]]
    score = table[["sr_add_low", "oracle_sr_low"]].min(axis=1, skipna=False) if toy else table["sr_add_low"]
    target = params.get("strength_target_sr")
    reached = table.index[score >= (STRENGTH_TARGET_SR if target is None else target)]
    chosen = reached[0] if len(reached) else score.fillna(-1.0).idxmax()
    table["chosen"] = table.index == chosen
    save_dataframe(table, out_csv)
    return float(table.loc[chosen, "alpha"])


def salient_strength(params: dict) -> float:
    """The α of the preset's adding edits (notebooks 03–04): ``salient_strength`` as given, or with
    ``auto`` the one notebook 02 chose on the validation split (``mapping/salient_strength.csv``)."""
    from .presets import results_dir

    value = params.get("salient_strength")
    if value is None:
        return 1.0
    if value != "auto":
        return float(value)
    path = results_dir(params) / "mapping" / "salient_strength.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: with salient_strength auto, notebook 02 chooses the strength "
                                f"on the validation split and writes it there; run notebook 02 (or set a number)")
    table = pd.read_csv(path)
    return float(table.loc[table["chosen"], "alpha"].iloc[0])


def is_asymmetric(params: dict) -> bool:
    """The preset's ``reverse_process`` (default: the paper's asymmetric Eq. 4)."""
    return (params.get("reverse_process") or "asymmetric") == "asymmetric"


def train_config(params: dict) -> TrainConfig:
    """The TrainConfig a preset's parameters describe. Loss terms the preset's ``lambdas`` leaves out
    weigh 1 (the paper's), unlike ``TrainConfig(lambdas=...)``, where they weigh 0."""
    return TrainConfig(arch=params["arch"], depth=params["depth"], t_edit=params["t_edit"], n_steps=params["ddim_steps"],
                       lr=params["lr"], epochs=params["epochs"], max_batches=params["train_batches"],
                       batch_per_class=params["batch_per_class"], kl_temperature=params["kl_temperature"],
                       validate_every=params["validate_every"], common_adversary=params["common_adversary"],
                       image_loss_every=params.get("image_loss_every", TrainConfig.image_loss_every),
                       asymmetric=is_asymmetric(params),
                       latent_warmup_steps=params.get("latent_warmup_steps", TrainConfig.latent_warmup_steps),
                       ema_decay=float(params.get("ema_decay") or TrainConfig.ema_decay),
                       lambdas={**{t: 1.0 for t in LOSS_TERMS}, **(params["lambdas"] or {})}, seed=params["seed"])


def inversion_dir(params: dict) -> Path:
    """Where inversions of this preset's images by this base model are cached (``cache/inversions``)."""
    from .diffusion import model_fingerprint
    from .presets import repo_path

    _, dataset_dir = prepare_dataset(params, progress=False)
    recorded = (dataset_dir / "dataset.json").read_text() if (dataset_dir / "dataset.json").exists() else ""
    model = model_fingerprint(repo_path(params["base_model"]))
    key = hashlib.sha1(f"{model}|{dataset_dir}|{recorded}".encode()).hexdigest()[:12]
    return repo_path("cache") / "inversions" / f"{dataset_dir.name}-{key}"


def save_classifier(model, accuracy: float, path: str | Path) -> None:
    save_torch(dict(state=model.state_dict(), test_accuracy=accuracy,
                    record=getattr(model, "record", SMALL_CNN_RECORD)), path)


def load_classifier(path: str | Path):
    """(model, test accuracy) from ``save_classifier``'s file; ``model.record`` says what it is."""
    from .classifier import ResNetClassifier, SmallCNN

    ck = torch.load(path, map_location="cpu", weights_only=True)
    record = ck.get("record", SMALL_CNN_RECORD)  # files from before the ResNet
    model = SmallCNN() if record["kind"] == "small-cnn" else ResNetClassifier()
    model.load_state_dict(ck["state"])
    model.record = record
    return model.eval(), ck["test_accuracy"]


def plot_training(run_dir: str | Path, title: str = ""):
    """``loss_curves.png``: every loss term (mean per batch) and the validation swap success; with a
    latent warm-up (``warmup_log.csv``) first a panel of its terms (means over 100 updates)."""
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    log, val = pd.read_csv(run_dir / "train_log.csv"), pd.read_csv(run_dir / "val_log.csv")
    warm = pd.read_csv(run_dir / "warmup_log.csv") if (run_dir / "warmup_log.csv").exists() else None
    per_batch = log.groupby(["epoch", "batch"], sort=False).mean(numeric_only=True).reset_index(drop=True)
    fig, axes = plt.subplots(1, 2 + (warm is not None), figsize=(11 + 5 * (warm is not None), 3.5))
    if warm is not None:
        per_100 = warm.groupby(warm["step"] // 100).mean(numeric_only=True)
        _plot_terms(axes[0], per_100["step"] + 1, per_100, f"{title} latent warm-up", "update",
                    "loss (mean over 100 updates)")
    a, b = axes[-2:]
    _plot_terms(a, per_batch.index + 1, per_batch, f"{title} training losses", "batch", "loss (mean over timesteps)")
    for col in [c for c in ("sr_add", "sr_remove", "sr_min") if c in val]:
        b.plot(val["minutes"], val[col], marker="o", label=col)
    b.set(ylim=(-0.05, 1.05), xlabel="training minutes", ylabel="validation swap success", title="validation SR")
    if b.lines:  # a validation without swap success (no classifier) has nothing to show
        b.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, run_dir / "loss_curves.png", dpi=110)
    return fig


def _plot_terms(ax, x, frame: pd.DataFrame, title: str, xlabel: str, ylabel: str) -> None:
    """Every loss term present in ``frame`` (and the total) against ``x``, log scale."""
    for term in [c for c in LOSS_TERMS + ("total",) if c in frame]:
        ax.plot(x, frame[term], label=term, lw=2 if term == "total" else 1)
    ax.set(yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7, ncol=2)


def qualitative_grids(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, data: dict[str, Split],
                      params: dict, out_dir: str | Path, n: int = 8,
                      alphas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)) -> dict[str, np.ndarray]:
    """Fig. 6/7: rows original / reconstruction / edit (/ true counterfactual on toy presets), for
    adding the attribute to backgrounds (S from the paired target, times the preset's
    ``salient_strength``) and removing it from targets (S = 0); plus an S-strength strip
    h̃ = f(C, α·S) for one background with a target's S."""
    from .datasets import toy_counterfactuals
    from .edit import edit
    from .plotting import save_grid

    out_dir, steps, t_edit, asym = Path(out_dir), params["ddim_steps"], params["t_edit"], is_asymmetric(params)
    bg, tg = data["test_bg"], data["test_tg"]
    xT_bg, xT_tg = cache(bg.keys[:n], bg.x[:n]), cache(tg.keys[:n], tg.x[:n])
    is_bg, is_tg = torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    added, removed = swap_salient(diffusion, net.eval(), xT_bg, xT_tg, steps, t_edit, salient_strength(params), asym)
    grids = {}
    for name, split, xT, cls, edited in (("add", bg, xT_bg, is_bg, added), ("remove", tg, xT_tg, is_tg, removed)):
        rows = [split.x[:n], edit(diffusion, net, xT, cls, steps, "reconstruct", t_edit, asymmetric=asym).cpu(), edited.cpu()]
        if params["dataset_kind"] == "toy":
            rows.append(toy_counterfactuals(split.rows.head(n), params["attribute"], split.x.shape[-1]))
        grids[name] = save_grid(rows, out_dir / f"qualitative_{name}.png", scale=4)
    strip = [edit(diffusion, net, xT_bg[:1], is_bg[:1], steps, "swap", t_edit, xT_tg[:1], is_tg[:1], alpha=a,
                  asymmetric=asym).cpu()
             for a in alphas]
    grids["strength"] = save_grid([torch.cat(strip)], out_dir / "salient_strength.png", scale=4)
    return grids


def image_term_models(cfg: TrainConfig, device, params: dict | None = None,
                      models: dict | None = None) -> tuple[TrainConfig, object, object]:
    """The LPIPS and identity models the image terms need (identity: the toy identity encoder on toy
    presets, facenet-pytorch vggface2 on the others); a term whose weights are absent is switched
    off (λ = 0, recorded in the run's config) with one warning naming the file to place. ``models``:
    the networks of ``evaluation.metric_models``, when already loaded."""
    import warnings

    models = models or metric_models(params or {"dataset_kind": "toy"}, device)
    lambdas, found = dict(cfg.lambdas), {}
    for term, key in (("lpips", "lpips"), ("id", "id_embed")):
        model = models[key] if lambdas[term] > 0 else None
        if isinstance(model, Unavailable):
            warnings.warn(f"{term.upper()} loss term off: {model.reason}", stacklevel=1)
            lambdas[term], model = 0.0, None
        found[term] = model
    return replace(cfg, lambdas=lambdas), found["lpips"], found["id"]


PAPER_STRENGTH_ROW = "x (α = 1)"
"""The domain label of the paper's unscaled swap in Tables 1–4 when the preset's strength differs."""


def quantitative_rows(diffusion: Diffusion, net: MappingNetwork, cache: InversionCache, data: dict[str, Split],
                      params: dict, classifier, models: dict, n: int | None = None) -> list[dict]:
    """Tables 1–4: one ``evaluation.domain_metrics`` row per domain for the first ``n`` test images of
    each class — x: backgrounds given the paired target's S (times the preset's ``salient_strength``),
    y: targets given S = 0 — with, on toy presets, the true counterfactuals (oracle SR,
    counterfactual MSE ratio, fd_toy). When that strength is not 1, a third row ``x (α = 1)`` is the
    paper's own swap."""
    from .datasets import toy_counterfactual_set
    from .evaluation import domain_metrics, toy_regions

    bg, tg = data["test_bg"], data["test_tg"]
    n = min(len(bg.x), len(tg.x)) if n is None else min(n, len(bg.x), len(tg.x))
    alpha = salient_strength(params)
    added, removed = edit_pairs(diffusion, net, cache, bg, tg, params["ddim_steps"], params["t_edit"], n,
                                is_asymmetric(params), alpha)
    domains = [("x", bg, added, tg, False), ("y", tg, removed, bg, True)]
    if alpha != 1.0:
        paper, _ = edit_pairs(diffusion, net, cache, bg, tg, params["ddim_steps"], params["t_edit"], n,
                              is_asymmetric(params), remove=False)
        domains.append((PAPER_STRENGTH_ROW, bg, paper, tg, False))
    rows = []
    for domain, split, edited, opposite, is_target in domains:
        toy = {}
        if params["dataset_kind"] == "toy":
            head = split.rows.head(n)
            toy = dict(counterfactual=toy_counterfactual_set(head, params["attribute"], split.x.shape[-1]),
                       regions=toy_regions(head, params["attribute"], split.x.shape[-1]))
        rows.append(domain_metrics(domain, split.x[:n], edited, opposite.x, classifier, is_target,
                                   models["lpips"], models["id_embed"], models["inception"], **toy))
    return rows


ABLATION_GRID = dict(t_edit=(400, 0), arch=("a", "b", "c", "d"), depth=(8, 12))
"""Tables 5–12 of the paper: every architecture × depth, for each editing interval."""


def ablation_study(diffusion: Diffusion, data: dict[str, Split], params: dict, classifier, models: dict,
                   out_dir: str | Path, grid: dict = ABLATION_GRID, progress: bool = True) -> pd.DataFrame:
    """Train and evaluate one mapping network per (t_edit, arch, depth) of ``grid`` with the
    preset's ablation budget (``ablation_batches`` batches, ``n_ablation_images`` test images per
    domain), without the weights' average (``ema_decay`` 0: these runs are shorter than its horizon,
    and the paper has none), edited with the paper's swap (salient strength 1). Every configuration reuses the preset's cached inversions; a finished configuration
    (its ``rows.json``) is read back instead of retrained, an interrupted one resumes. ``models``:
    ``evaluation.metric_models`` (the metrics' networks, also the LPIPS / ID loss terms'). Returns
    the long table: one row per configuration and domain."""
    import itertools
    import json

    from .io import write_text

    out_dir = Path(out_dir)
    cache_dir = inversion_dir(params)
    cache = InversionCache(diffusion, params["ddim_steps"], cache_dir)
    rows = []
    configs = list(itertools.product(grid["t_edit"], grid["arch"], grid["depth"]))
    for t_edit, arch, depth in tqdm(configs, desc="ablation", disable=not progress):
        run = out_dir / f"t{t_edit}-{arch}-d{depth}"
        done = run / "rows.json"
        if not done.exists():
            p = {**params, "t_edit": t_edit, "arch": arch, "depth": depth,
                 "train_batches": params["ablation_batches"], "validate_every": 0, "ema_decay": 0,
                 "salient_strength": 1.0}  # the paper's swap
            cfg, lpips, id_embed = image_term_models(train_config(p), diffusion.device, p, models)
            net = train_preset(diffusion, data, cfg, run, classifier, cache_dir, lpips, id_embed, progress=False)
            found = quantitative_rows(diffusion, net, cache, data, p, classifier, models, params["n_ablation_images"])
            write_text(done, json.dumps(found, indent=1))
        rows += [{"t_edit": t_edit, "arch": arch, "depth": depth, **r} for r in json.loads(done.read_text())]
    return pd.DataFrame(rows)


def write_ablation_tables(table: pd.DataFrame, tables_dir: str | Path, preset: str) -> dict[int, str]:
    """``ablation.csv`` (columns t_edit, arch, depth, then ``evaluation.write_table``'s), per
    t_edit ``ablation_t<t>.md`` laid out like the paper's Tables 5–12, and ``ablation_means.csv``
    (``ablation_means``); returns the Markdown."""
    from .evaluation import markdown_table, results_frame
    from .io import save_dataframe, write_text

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
    from .mapping import ARCHITECTURES

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


def metric_models(params: dict, device) -> dict:
    """``evaluation.metric_models`` for a preset: weight paths in the preset are relative to the repository."""
    from .evaluation import metric_models as load
    from .presets import repo_path

    paths = {k: repo_path(params[k]) if params.get(k) else None for k in ("facenet_weights", "inception_weights")}
    return load(params["dataset_kind"], device, paths["facenet_weights"], paths["inception_weights"])
