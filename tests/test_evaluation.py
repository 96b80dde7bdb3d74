import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from hsep_utils.classifier import swap_success
from hsep_utils.evaluation import (UNAVAILABLE, cf_mse_ratio, domain_metrics, frechet_distance, identity_similarity,
                                   inception_distances, kernel_distance, nearest_counterfactual, oracle_success,
                                   toy_regions, write_table)
from hsep_utils.identity import DEFAULT_FILE, default_encoder_file, toy_identity_embedder, train
from hsep_utils.metrics import Unavailable
from hsep_utils.toy import ATTRIBUTES, attribute_region, render, sample_factors
from hsep_utils.weights import ALEXNET_FILE, FACENET_FILE, INCEPTION_FILE, facenet_embedder, inception_extractor, lpips_model


def unit_images(*values, size: int = 4) -> torch.Tensor:
    """Constant images with pixel value u in [0, 1] (as [-1, 1] tensors)."""
    return torch.stack([torch.full((3, size, size), 2 * v - 1.0) for v in values])


class StubClassifier(nn.Module):
    """Predicts "target" when an image's top-left pixel is positive; features = channel means."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, 0] + self.bias

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


def test_frechet_distance_of_1d_gaussians_by_hand():
    a, b = np.array([0.0, 2.0]), np.array([1.0, 2.0, 3.0])  # mean 1, var 2 ; mean 2, var 1 (unbiased)
    assert frechet_distance(a, b) == pytest.approx((1 - 2) ** 2 + 2 + 1 - 2 * math.sqrt(2) * 1, abs=1e-12)


def test_frechet_distance_matches_cleanfid_and_survives_rank_deficiency():
    from cleanfid.fid import frechet_distance as cleanfid_fd

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 5)), rng.normal(1.0, 2.0, size=(300, 5))
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (a, b)]
    assert frechet_distance(a, b) == pytest.approx(cleanfid_fd(*stats[0], *stats[1]), rel=1e-8)
    small = rng.normal(size=(10, 50))  # 10 samples in 50-d: covariance of rank 9
    assert frechet_distance(small, small) == pytest.approx(0.0, abs=1e-8)
    d = frechet_distance(small, rng.normal(size=(12, 50)))
    assert math.isfinite(d) and d > 0


def test_identity_similarity_is_the_cosine_of_embeddings():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]]).view(2, 2, 1, 1)
    b = torch.tensor([[1.0, 1.0], [0.0, -1.0]]).view(2, 2, 1, 1)
    cos = identity_similarity(lambda x: x.flatten(1), a, b)
    assert cos.tolist() == pytest.approx([1 / math.sqrt(2), -1.0])


def test_oracle_success_on_4x4_images_with_and_without_a_region():
    original, counterfactual = unit_images(0.0, 0.0), unit_images(1.0, 0.0)
    counterfactual[1, :, :2, :2] = 1.0  # image 1: the attribute is only in the top-left 2×2 box
    edited = original.clone()
    edited[:, :, :2, :2] = 1.0  # both edits paint just the box
    # image 0: box MSE to cf 0 < to original 1, but over the image 12/16 to cf > 4/16 to original
    # image 1: cf differs from the original only in the box, where the edit matches it
    box = [(0, 0, 2, 2), (0, 0, 2, 2)]
    assert oracle_success(edited, original, counterfactual, box).tolist() == [True, True]
    assert oracle_success(edited, original, counterfactual).tolist() == [False, True]
    assert oracle_success(original, original, counterfactual).tolist() == [False, False]


def test_oracle_success_and_cf_mse_ratio_take_each_edits_nearest_counterfactual():
    """A set of counterfactuals (K, N, ...): the edit is scored against the one nearest it."""
    original = unit_images(0.0, 0.0)
    choices = torch.stack([unit_images(1.0, 1.0), unit_images(0.5, 0.5)])  # two right edits of each image
    edited = unit_images(0.4, 0.6)
    assert nearest_counterfactual(edited, choices).equal(unit_images(0.5, 0.5))
    assert nearest_counterfactual(edited, choices[0]).equal(choices[0])  # one per image passes through
    # against the first only: image 0 is nearer the original (0.36 < 0.16 is false), image 1 not
    assert oracle_success(edited, original, choices[0]).tolist() == [False, True]
    assert oracle_success(edited, original, choices).tolist() == [True, True]
    # nearest: MSE(edit, cf) = 0.01, 0.01; MSE(input, cf) = 0.25, 0.25
    assert cf_mse_ratio(edited, original, choices) == pytest.approx(0.04)


def test_toy_counterfactual_set_renders_one_per_glasses_style_when_adding_glasses(tmp_path):
    from hsep_utils.datasets import build_toy_dataset, toy_counterfactual_set, toy_counterfactuals

    manifest, _ = build_toy_dataset(tmp_path, "glasses", 2, 3, seed=0, progress=False)
    bg, tg = (manifest[manifest["class"] == c].reset_index(drop=True) for c in ("background", "target"))
    adding = toy_counterfactual_set(bg, "glasses", 16)
    assert adding.shape == (3, len(bg), 3, 16, 16) and adding[0].equal(toy_counterfactuals(bg, "glasses", 16))
    assert all(not adding[i].equal(adding[j]) for i, j in ((0, 1), (0, 2), (1, 2)))
    assert toy_counterfactual_set(tg, "glasses", 16).shape == (1, len(tg), 3, 16, 16)  # removing: one


def test_cf_mse_ratio_by_hand():
    original, counterfactual, edited = unit_images(0.0, 0.0), unit_images(1.0, 1.0), unit_images(0.5, 1.0)
    # MSE(edit, cf) = 0.25, 0 → mean 0.125; MSE(input, cf) = 1, 1 → mean 1
    assert cf_mse_ratio(edited, original, counterfactual) == pytest.approx(0.125)


def test_rate_lower_bound_by_hand():
    from hsep_utils.metrics import rate_lower_bound

    # Wilson score interval of 90 successes in 100 at 95 % (two-sided): 0.8256 … 0.9448
    assert rate_lower_bound(0.9, 100, 0.975) == pytest.approx(0.82563, abs=1e-5)
    assert rate_lower_bound(0.9, 100, 0.5) == pytest.approx(0.9)  # no confidence asked: the rate
    assert rate_lower_bound(1.0, 10, 0.9) < 1.0 and rate_lower_bound(0.0, 10, 0.9) == pytest.approx(0.0)
    assert math.isnan(rate_lower_bound(0.5, 0, 0.9)) and math.isnan(rate_lower_bound(math.nan, 5, 0.9))


def test_toy_regions_from_manifest_rows():
    factors = [sample_factors(0, i) for i in range(3)]
    rows = pd.DataFrame([f.as_dict() for f in factors])
    assert toy_regions(rows, "smile", 32) == [attribute_region(f, "smile", 32) for f in factors]
    assert toy_regions(rows, "age", 32) is None
    with pytest.raises(ValueError, match="unknown toy attribute"):
        toy_regions(rows, "hat", 32)


def test_sr_counts_only_correctly_classified_originals():
    clf, BG, TG = StubClassifier(), 0.25, 0.75  # u < 0.5 → predicted background
    # x: originals bg, bg, bg, tg (misclassified: excluded though its edit "succeeds"); edits tg, bg, tg, tg
    x_orig, x_edit = unit_images(BG, BG, BG, TG), unit_images(TG, BG, TG, TG)
    # y: originals tg, tg, bg (misclassified: excluded); edits bg, tg, bg
    y_orig, y_edit = unit_images(TG, TG, BG), unit_images(BG, TG, BG)
    x = domain_metrics("x", x_orig, x_edit, y_orig, clf, original_is_target=False)
    y = domain_metrics("y", y_orig, y_edit, x_orig, clf, original_is_target=True)
    assert (x["sr"], x["sr_counted"], x["n"]) == (pytest.approx(2 / 3), 3, 4)
    assert (y["sr"], y["sr_counted"], y["n"]) == (0.5, 2, 3)
    both = swap_success(clf, x_orig, y_orig, x_edit, y_edit)
    assert both == dict(sr_add=pytest.approx(2 / 3), sr_remove=0.5, sr=pytest.approx(7 / 12), sr_min=0.5, n_counted=5)
    # no target original classified right: removal is NaN, the weaker direction is the one that counted
    one_way = swap_success(clf, x_orig, unit_images(BG), x_edit, unit_images(BG))
    assert math.isnan(one_way["sr_remove"]) and one_way["sr_min"] == pytest.approx(2 / 3)
    none = domain_metrics("x", unit_images(TG), unit_images(TG), y_orig, clf, original_is_target=False)
    assert math.isnan(none["sr"]) and none["sr_counted"] == 0


class StubInception(nn.Module):
    """Checks clean-fid's input contract (299 px, [0, 255]); features = channel means."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1:] == (3, 299, 299) and x.min() >= -1e-3 and x.max() <= 255 + 1e-3
        return x.mean((2, 3)) + self.bias


def test_fid_and_kid_use_the_extractor_features_and_pass_unavailable_through():
    a, b = unit_images(0.0, 0.2, 0.4, size=8), unit_images(1.0, 0.6, size=8)
    feats = lambda u: 255 * np.repeat(np.array(u)[:, None], 3, 1)  # noqa: E731  constant images keep their value
    found = inception_distances(a, b, StubInception())
    assert found["fid"] == pytest.approx(frechet_distance(feats([0, .2, .4]), feats([1, .6])), rel=1e-4)
    assert found["kid"] == pytest.approx(kernel_distance(feats([0, .2, .4]), feats([1, .6])), rel=1e-4)
    assert inception_distances(a, a, StubInception())["fid"] == pytest.approx(0.0, abs=1e-3)
    missing = Unavailable("FID needs a file")
    assert inception_distances(a, b, missing) is missing


def test_kernel_distance_is_clean_fids_kid_seeded():
    from cleanfid.fid import kernel_distance as clean_kid

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 16)), rng.normal(0.5, 1.0, size=(30, 16))
    # one subset holding every row of the smaller set: no sampling left, the two must agree
    np.random.seed(0)
    ours, theirs = kernel_distance(a[:30], b, subsets=1), clean_kid(a[:30], b, num_subsets=1)
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert kernel_distance(a, b) == kernel_distance(a, b)  # seeded: the same sets, the same number
    assert kernel_distance(a, b) > 10 * abs(kernel_distance(a[:20], a[20:]))  # shifted set vs same distribution
    with pytest.raises(ValueError, match="≥ 2 samples"):
        kernel_distance(a[:1], b)


def test_missing_weights_give_the_reason_and_no_number(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    models = dict(lpips=lpips_model(), id_embed=facenet_embedder(), inception=inception_extractor(path=tmp_path))
    for model, file in zip(models.values(), (ALEXNET_FILE, FACENET_FILE, INCEPTION_FILE)):
        assert isinstance(model, Unavailable) and file in model.reason and str(tmp_path) in model.reason
    toy_id = toy_identity_embedder(path=tmp_path / "absent")
    assert isinstance(toy_id, Unavailable) and "python -m hsep_utils.identity" in toy_id.reason
    assert str(tmp_path / "absent" / DEFAULT_FILE) in toy_id.reason

    x = unit_images(0.2, 0.3)
    row = domain_metrics("x", x, x.flip(0), unit_images(0.8, 0.9), StubClassifier(), False, **models)
    for metric, value in models.items():
        name = {"lpips": "lpips", "id_embed": "id", "inception": "fid"}[metric]
        assert row[name] == UNAVAILABLE and row["reasons"][name] == value.reason
    md = write_table([row], tmp_path / "t.csv", tmp_path / "t.md", "toy", notes=["a note"])
    table_line = next(line for line in md.splitlines() if line.startswith("| x"))
    cells = [c.strip() for c in table_line.strip("|").split("|")]
    assert [c.split(" [")[0] for c in (cells[1], cells[4], cells[5])] == [UNAVAILABLE] * 3
    for model in models.values():
        assert model.reason in md
    csv = pd.read_csv(tmp_path / "t.csv")
    assert list(csv.loc[0, ["lpips", "id", "fid"]]) == [UNAVAILABLE] * 3
    assert ALEXNET_FILE in csv.loc[0, "unavailable_reasons"]


def test_ablation_means_by_hand():
    from hsep_utils.ablation import ablation_means

    # SR and PSNR per (t_edit, arch, depth, domain); "unavailable" entries of other columns are left alone
    rows = [(0, "a", 8, 1.0, 0.5), (0, "b", 8, 0.5, 1.0), (400, "a", 8, 0.0, 0.25), (400, "b", 8, 0.25, 0.0),
            (0, "a", 12, 0.5, 0.5), (0, "b", 12, 0.0, 0.5), (400, "a", 12, 0.0, 0.0), (400, "b", 12, 0.25, 0.25)]
    table = pd.DataFrame([dict(t_edit=t, arch=a, depth=d, domain=dom, sr=sr, psnr=10 * sr, lpips="unavailable")
                          for t, a, d, add, rem in rows for dom, sr in (("x", add), ("y", rem))])
    means = ablation_means(table).set_index("level")
    assert list(means["factor"]) == ["arch"] * 2 + ["fusion"] * 4 + ["t_edit"] * 2 + ["depth"] * 2
    assert means.loc["a", "add_sr"] == pytest.approx((1.0 + 0.0 + 0.5 + 0.0) / 4)
    assert means.loc["b", "remove_sr"] == pytest.approx((1.0 + 0.0 + 0.5 + 0.25) / 4)
    assert means.loc["t_edit 0, fused (a, c)", "add_sr"] == pytest.approx((1.0 + 0.5) / 2)  # (a) is fused, (b) additive
    assert means.loc["t_edit 400, additive (b, d)", "remove_sr"] == pytest.approx((0.0 + 0.25) / 2)
    assert means.loc["0", "x_psnr"] == pytest.approx(10 * (1.0 + 0.5 + 0.5 + 0.0) / 4)
    assert means.loc["12", "y_psnr"] == pytest.approx(10 * (0.5 + 0.5 + 0.0 + 0.25) / 4)


def test_a_finished_ablation_configuration_is_read_back_only_with_the_same_recipe(tmp_path):
    import json
    from dataclasses import asdict, replace

    from hsep_utils.ablation import check_same_recipe
    from hsep_utils.train import TrainConfig

    cfg = TrainConfig(edit_sparsity=1.0)
    (tmp_path / "t0-a-d8").mkdir()
    (tmp_path / "t0-a-d8" / "train_config.json").write_text(json.dumps({"train": asdict(cfg), "net": {}}))
    check_same_recipe(tmp_path / "t0-a-d8", cfg)  # the recipe it was trained with
    older = {k: v for k, v in asdict(cfg).items() if k != "edit_sparsity_groups"}  # written before that setting existed
    (tmp_path / "t0-a-d8" / "train_config.json").write_text(json.dumps({"train": older, "net": {}}))
    check_same_recipe(tmp_path / "t0-a-d8", cfg)  # its default is what it was trained with
    with pytest.raises(ValueError, match=r"edit_sparsity 1.0 → 1.25.*delete"):
        check_same_recipe(tmp_path / "t0-a-d8", replace(cfg, edit_sparsity=1.25))


def test_write_table_layout(tmp_path):
    rows = [dict(domain=d, lpips=0.2, mse=0.01, psnr=20.0, id=0.9, fid=UNAVAILABLE, sr=s, sr_counted=3, n=4,
                 reasons=dict(fid="FID needs inception-2015-12-05.pt")) for d, s in (("x", 0.5), ("y", 0.75))]
    md = write_table(rows, tmp_path / "t.csv", tmp_path / "t.md", "Toy glasses", notes=["x: add; y: remove"])
    lines = md.splitlines()
    assert lines[0] == "### Toy glasses"
    assert lines[2] == "| domain | ↓ LPIPS | ↓ MSE | ↑ PSNR (dB) | ↑ ID | ↓ FID | ↑ SR |"
    assert lines[4].startswith("| x") and "| 0.200 | 0.0100 | 20.00 | 0.900 | unavailable [1] | 0.500 |" in lines[4]
    assert "| 0.750 |" in lines[5] and md.count("[1] FID needs inception-2015-12-05.pt") == 1
    assert (tmp_path / "t.md").read_text() == md
    csv = pd.read_csv(tmp_path / "t.csv")
    assert list(csv.columns) == ["domain", "lpips", "mse", "psnr", "id", "fid", "sr", "n", "sr_counted", "n_reference",
                                 "unavailable_reasons"]


def _identity_views(seed: int, n: int) -> torch.Tensor:
    """n identities, each as (base, each attribute flipped): (n, 5, 3, 32, 32) in [-1, 1]."""
    arr = np.stack([np.stack([render(f)] + [render(f.flipped(a)) for a in ATTRIBUTES])
                    for f in (sample_factors(seed, i) for i in range(n))])
    return torch.from_numpy(arr).permute(0, 1, 4, 2, 3).float().div(127.5).sub(1)


@pytest.mark.parametrize("judge", [False, True], ids=["loss", "metric"])
def test_committed_identity_encoder_separates_identities_not_attributes(judge):
    assert default_encoder_file(judge).is_file(), "run python -m hsep_utils.identity and commit its output"
    embed = toy_identity_embedder(judge=judge)
    assert not isinstance(embed, Unavailable)
    views = _identity_views(seed=0, n=6)  # the presets' own identities
    e = embed(views.flatten(0, 1)).view(6, 5, -1)
    same = (e[:, :1] * e[:, 1:]).sum(-1)  # each identity vs itself with one attribute flipped
    diff = e[:, 0] @ e[:, 0].T
    diff = diff[~torch.eye(6, dtype=torch.bool)]
    assert same.mean() > diff.mean() + 0.5 and same.min() > diff.max()
    x = views[:2, 0].clone().requires_grad_(True)  # the ID loss needs gradients at the input
    embed(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert embed(torch.nn.functional.interpolate(views[:2, 0], size=64)).shape == (2, 64)  # any size


def test_toy_domain_row_has_the_toy_columns():
    bg, cf = _identity_views(seed=0, n=4)[:, 0], _identity_views(seed=0, n=4)[:, 1]
    rows = pd.DataFrame([sample_factors(0, i).as_dict() for i in range(4)])
    row = domain_metrics("x", bg, cf, cf, StubClassifier(), False, id_embed=toy_identity_embedder(),
                         counterfactual=cf, regions=toy_regions(rows, "glasses", 32))
    assert row["oracle_sr"] == 1.0 and row["cf_mse_ratio"] == 0.0 and row["fd_toy"] == pytest.approx(0, abs=1e-6)
    assert 0 < row["id"] < 1 and row["reasons"].keys() == {"lpips", "fid", "kid", "oracle_sr_donor", "donor_match",
                                                             "identity_kept"}
    assert row["psnr_outside"] > 30  # the counterfactual differs from the input inside the glasses box only
    assert "local attribute" in row["reasons"]["identity_kept"]
    global_row = domain_metrics("x", bg, cf, cf, StubClassifier(), False, id_embed=toy_identity_embedder(),
                                counterfactual=cf, regions=None)
    assert global_row["identity_kept"] == 1.0 and "global attribute" in global_row["reasons"]["psnr_outside"]


def test_identity_kept_counts_edits_their_own_original_is_found_for():
    from hsep_utils.evaluation import identity_kept

    original = torch.rand(5, 3, 8, 8) * 2 - 1
    flat = lambda x: x.flatten(1)  # noqa: E731 (a stand-in identity network: the pixels themselves)
    assert identity_kept(flat, original + 0.01 * torch.randn_like(original), original, batch_size=2).all()
    swapped = original[[1, 0, 2, 3, 4]]  # edits 0 and 1 look like the other's original
    assert identity_kept(flat, swapped, original).tolist() == [False, False, True, True, True]


def test_identity_training_is_deterministic(tmp_path):
    tiny = dict(n_identities=6, views_per_identity=2, n_val_identities=3, epochs=2, batch_size=4,
                num_threads=0, progress=False)  # num_threads=0 leaves the test process's threads alone
    a = train(out=str(tmp_path / "a"), **tiny)
    b = train(out=str(tmp_path / "b"), **tiny)
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not isinstance(toy_identity_embedder(path=a), Unavailable)


def _two_class_data(size: int, n: int, seed: int = 0) -> dict:
    """Backgrounds dark, targets bright (plus noise): any working classifier separates them."""
    from hsep_utils.splits import Split

    g = torch.Generator().manual_seed(seed)

    def split(level, k):
        return Split(pd.DataFrame({"file": [f"{level}-{i}" for i in range(k)]}),
                     (level + 0.3 * torch.randn(k, 3, size, size, generator=g)).clamp(-1, 1))
    return dict(train_bg=split(-0.5, n), train_tg=split(0.5, n), test_bg=split(-0.5, 8), test_tg=split(0.5, 8))


def test_real_presets_get_a_resnet_from_imagenet_weights_or_from_scratch(tmp_path, monkeypatch):
    from torchvision.models import resnet18

    from hsep_utils.classifier import ResNetClassifier, SmallCNN, build_classifier, describe
    from hsep_utils.classifier import fit_attribute_classifier, load_classifier, save_classifier
    from hsep_utils.weights import RESNET18_FILE

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    small, rec = build_classifier(32)
    assert isinstance(small, SmallCNN) and rec == dict(kind="small-cnn", init="scratch", width=32, blocks=3)
    scratch, rec = build_classifier(64)  # no ImageNet file: from scratch, and the table says why
    assert isinstance(scratch, ResNetClassifier) and rec["init"] == "scratch" and RESNET18_FILE in rec["why"]
    assert "from scratch" in describe(rec) and str(tmp_path / "torch") in describe(rec)

    imagenet = resnet18()
    file = tmp_path / "torch" / "hub" / "checkpoints" / RESNET18_FILE
    file.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), file)
    tuned, rec = build_classifier(64)
    assert rec == dict(kind="resnet18", init="imagenet", weights=RESNET18_FILE)
    torch.testing.assert_close(tuned.net.conv1.weight, imagenet.conv1.weight)
    assert tuned(torch.zeros(2, 3, 64, 64)).shape == (2,)

    model, accuracy = fit_attribute_classifier(_two_class_data(64, 32), seed=0, progress=False, device="cpu")
    assert model.record["init"] == "imagenet" and 0.0 <= accuracy <= 1.0
    save_classifier(model, accuracy, tmp_path / "classifier.pt")
    loaded, acc2 = load_classifier(tmp_path / "classifier.pt")
    assert isinstance(loaded, ResNetClassifier) and loaded.record == model.record and acc2 == accuracy
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_small_cnn_classifier_separates_an_easy_split():
    from hsep_utils.classifier import fit_attribute_classifier

    model, accuracy = fit_attribute_classifier(_two_class_data(32, 64), seed=0, progress=False, device="cpu")
    assert model.record["kind"] == "small-cnn" and accuracy == 1.0


def _strength_setup(monkeypatch, tmp_path, sr_by_alpha, counted=2):
    """choose_salient_strength with edits whose SR is read off ``sr_by_alpha`` (the fake edit marks each
    image with its strength: α adding, β removing), measured on ``counted`` images."""
    from hsep_utils import strength
    from hsep_utils.splits import Split

    bg = Split(pd.DataFrame({"file": ["a", "b"]}), torch.zeros(2, 3, 4, 4))
    tg = Split(pd.DataFrame({"file": ["c", "d"]}), torch.ones(2, 3, 4, 4))
    # ``remove`` and ``add`` have no default here: the choice must ask for one direction only
    def edit_pairs(d, net, cache, b, t, steps, t_edit, n, asym, alpha, remove, add, removal_strength, t_edit_max=None,
                   residual=False, donor_prior=None, edit_mask=0.0, common_shift=None):
        assert add != remove
        return (torch.full((n, 3, 4, 4), alpha / 4) if add else None,
                torch.full((n, 3, 4, 4), removal_strength / 4) if remove else None)
    monkeypatch.setattr(strength, "edit_pairs", edit_pairs)
    monkeypatch.setattr(strength, "edit_success",
                        lambda model, x, edited, original_is_target: (sr_by_alpha[4 * edited.flatten()[0].item()], counted))
    params = dict(ddim_steps=5, t_edit=0, reverse_process="symmetric", preset="p", results_root=str(tmp_path))
    return strength, dict(val_bg=bg, val_tg=tg), params


def test_salient_strength_auto_takes_the_smallest_alpha_reaching_the_target(monkeypatch, tmp_path):
    sr = {1.0: 0.5, 1.25: 0.8, 1.5: 0.95, 2.0: 1.0, 2.5: 1.0, 3.0: 0.9}
    strength, data, params = _strength_setup(monkeypatch, tmp_path, sr)
    csv = tmp_path / "p" / "mapping" / "salient_strength.csv"
    assert strength.choose_salient_strength(None, None, None, data, params, None, csv, confidence=0.5) == 1.5
    table = pd.read_csv(csv)
    assert list(table["alpha"]) == [1.25, 1.5, 2.0]  # bisection: 3 of the 6 strengths edited
    assert list(table["sr_add"]) == [sr[a] for a in table["alpha"]]
    assert table["chosen"].sum() == 1 and table.loc[table["chosen"], "alpha"].item() == 1.5
    assert strength.choose_salient_strength(None, None, None, data, {**params, "strength_target_sr": 0.99}, None, csv,
                                             confidence=0.5) == 2.0
    # what notebooks 03–04 edit with: the chosen α under auto, the number as given otherwise
    assert strength.salient_strength({**params, "salient_strength": "auto"}) == 2.0
    assert strength.salient_strength({**params, "salient_strength": 1.25}) == 1.25
    assert strength.salient_strength(params) == 1.0


def test_removal_strength_auto_is_chosen_the_same_way_on_the_removal_sr(monkeypatch, tmp_path):
    sr = {1.0: 0.5, 1.25: 0.8, 1.5: 0.95, 2.0: 1.0, 2.5: 1.0, 3.0: 0.9}
    strength, data, params = _strength_setup(monkeypatch, tmp_path, sr)
    csv = tmp_path / "p" / "mapping" / "removal_strength.csv"
    assert strength.choose_salient_strength(None, None, None, data, params, None, csv, confidence=0.5,
                                             direction="remove") == 1.5
    table = pd.read_csv(csv)
    assert list(table["beta"]) == [1.25, 1.5, 2.0] and list(table["sr_remove"]) == [0.8, 0.95, 1.0]
    assert strength.salient_strength({**params, "removal_strength": "auto"}, "remove") == 1.5
    assert strength.salient_strength({**params, "removal_strength": 2}, "remove") == 2.0
    assert strength.salient_strength(params, "remove") == 1.0  # the paper's S = 0
    with pytest.raises(FileNotFoundError, match="salient_strength.csv"):  # the adding choice is its own file
        strength.salient_strength({**params, "salient_strength": "auto"})
    with pytest.raises(ValueError, match="direction"):
        strength.choose_salient_strength(None, None, None, data, params, None, csv, direction="both")


def test_salient_strength_auto_asks_the_target_with_confidence(monkeypatch, tmp_path):
    from hsep_utils.metrics import rate_lower_bound

    sr = {1.0: 0.5, 1.25: 0.8, 1.5: 0.92, 2.0: 0.97, 2.5: 0.99, 3.0: 0.99}
    strength, data, params = _strength_setup(monkeypatch, tmp_path, sr, counted=100)
    csv = tmp_path / "s.csv"
    assert strength.choose_salient_strength(None, None, None, data, params, None, csv, confidence=0.5) == 1.5
    # 92 of 100 is at least 0.88 with 90 % confidence, 97 of 100 at least 0.94
    assert strength.choose_salient_strength(None, None, None, data, params, None, csv) == 2.0
    table = pd.read_csv(csv)
    assert table["sr_add_low"].tolist() == pytest.approx([rate_lower_bound(sr[a], 100, 0.9) for a in table["alpha"]])


def test_salient_strength_auto_on_toy_presets_asks_the_oracle_too(monkeypatch, tmp_path):
    sr = {1.0: 0.5, 1.25: 0.9, 1.5: 0.95, 2.0: 1.0, 2.5: 1.0, 3.0: 1.0}
    oracle = {1.0: 0.0, 1.25: 0.5, 1.5: 0.5, 2.0: 1.0, 2.5: 1.0, 3.0: 1.0}
    strength, data, params = _strength_setup(monkeypatch, tmp_path, sr)
    monkeypatch.setattr(strength, "toy_counterfactual_set",
                        lambda rows, attribute, size: torch.zeros(3, len(rows), 3, 4, 4))
    monkeypatch.setattr(strength, "toy_regions", lambda rows, attribute, size: None)
    # two validation images: the oracle passes none, one or both (the fake edit carries its α)
    monkeypatch.setattr(strength, "oracle_success", lambda edited, x, cf, regions:
                        torch.tensor([oracle[4 * edited.flatten()[0].item()] >= t for t in (0.5, 1.0)]))
    toy = {**params, "dataset_kind": "toy", "attribute": "glasses"}
    csv = tmp_path / "s.csv"
    assert strength.choose_salient_strength(None, None, None, data, params, None, csv, confidence=0.5) == 1.25  # classifier only
    assert "oracle_sr" not in pd.read_csv(csv)
    assert strength.choose_salient_strength(None, None, None, data, toy, None, csv, confidence=0.5) == 2.0  # the oracle reaches 0.9 at 2
    table = pd.read_csv(csv)
    assert list(table["alpha"]) == [1.25, 1.5, 2.0] and list(table["oracle_sr"]) == [oracle[a] for a in table["alpha"]]
    # none reaches: the smallest α of the best lower SR (1.0 at α 2; the classifier alone is 1.0 there too)
    assert strength.choose_salient_strength(None, None, None, data, {**toy, "strength_target_sr": 1.01}, None, csv,
                                             confidence=0.5) == 2.0


def test_salient_strength_auto_without_a_reaching_alpha_takes_the_best_and_names_a_missing_choice(monkeypatch, tmp_path):
    sr = {1.0: 0.3, 1.25: 0.6, 1.5: 0.7, 2.0: 0.7, 2.5: float("nan"), 3.0: 0.65}
    strength, data, params = _strength_setup(monkeypatch, tmp_path, sr)
    assert strength.choose_salient_strength(None, None, None, data, params, None, tmp_path / "s.csv", confidence=0.5) == 1.5
    assert list(pd.read_csv(tmp_path / "s.csv")["alpha"]) == list(strength.STRENGTH_GRID)  # every one edited
    with pytest.raises(FileNotFoundError, match="salient_strength.csv.*run notebook 02"):
        strength.salient_strength({**params, "salient_strength": "auto"})


def test_a_presets_strength_grid_extends_the_search_beyond_the_default(monkeypatch, tmp_path):
    """``strength_grid`` (toy-age: 1 … 5): where no strength of the default grid reaches the target, the
    preset's larger ones are searched too; a grid with a strength ≤ 0 is refused by name."""
    sr = {1.0: 0.3, 1.25: 0.4, 1.5: 0.5, 2.0: 0.6, 2.5: 0.7, 3.0: 0.8, 4.0: 0.95, 5.0: 1.0}
    strength, data, params = _strength_setup(monkeypatch, tmp_path, sr)
    csv = tmp_path / "s.csv"
    assert strength.choose_salient_strength(None, None, None, data, params, None, csv, confidence=0.5) == 3.0
    wide = {**params, "strength_grid": [5, 1, 1.25, 1.5, 2, 2.5, 3, 4]}
    assert strength.choose_salient_strength(None, None, None, data, wide, None, csv, confidence=0.5) == 4.0
    assert 4.0 in set(pd.read_csv(csv)["alpha"]) and max(pd.read_csv(csv)["alpha"]) <= 5.0
    for bad in ([1, 0], []):
        with pytest.raises(ValueError, match="strength_grid"):
            strength.choose_salient_strength(None, None, None, data, {**params, "strength_grid": bad}, None, csv)


def test_donor_oracle_and_donor_match_ask_for_the_donors_glasses_style():
    """Adding glasses by swap should take the donor's own glasses style: rendered toy faces with the
    donor's style pass both; glasses of another style pass the any-style oracle only."""
    import pandas as pd

    from hsep_utils.datasets import toy_counterfactual_set, toy_donor_counterfactuals
    from hsep_utils.evaluation import donor_transfer
    from hsep_utils.plotting import from_uint8
    from hsep_utils.toy import ToyFactors

    faces = [sample_factors(3, i, glasses=0) for i in range(3)]
    donors = [replace(sample_factors(4, i, glasses=1), glasses_style=c) for i, c in enumerate((2, 0, 1))]
    rows, donor_rows = pd.DataFrame([f.as_dict() for f in faces]), pd.DataFrame([d.as_dict() for d in donors])
    original = from_uint8(np.stack([render(f) for f in faces]))
    cf_set = toy_counterfactual_set(rows, "glasses", 32)
    donor_cf = toy_donor_counterfactuals(rows, donor_rows, "glasses", 32)
    regions = toy_regions(rows, "glasses", 32)
    right = from_uint8(np.stack([render(replace(f, glasses=1, glasses_style=d.glasses_style)) for f, d in zip(faces, donors)]))
    wrong = from_uint8(np.stack([render(replace(f, glasses=1, glasses_style=(d.glasses_style + 1) % 3))
                                 for f, d in zip(faces, donors)]))
    assert torch.equal(donor_cf, right)
    match, success = donor_transfer(right, original, cf_set, donor_cf, regions)
    assert match.all() and success.all()
    match, success = donor_transfer(wrong, original, cf_set, donor_cf, regions)
    assert not match.any() and not success.any() and oracle_success(wrong, original, cf_set, regions).all()
    row = domain_metrics("x", original, wrong, right, StubClassifier(), False, counterfactual=cf_set, regions=regions,
                         donor_counterfactual=donor_cf)
    assert row["oracle_sr"] == 1.0 and row["oracle_sr_donor"] == 0.0 and row["donor_match"] == 0.0
    removal = domain_metrics("y", right, original, original, StubClassifier(), True, counterfactual=cf_set[:1],
                             regions=regions)
    assert removal["donor_match"] == UNAVAILABLE and "no donor" in removal["reasons"]["donor_match"]
    face = replace(ToyFactors.from_mapping(rows.iloc[0]), smile=0)
    smiling = face.with_salient_of(donors[0], "smile")  # the donor's mouth, the face's own glasses style
    assert smiling.smile == 1 and smiling.mouth_shape == donors[0].mouth_shape and smiling.glasses_style == face.glasses_style


def test_psnr_outside_ignores_the_box():
    from hsep_utils.evaluation import psnr_outside

    a = unit_images(0.5, 0.5, size=8)
    b = a.clone()
    b[:, :, 2:5, 1:6] = 1.0  # a change inside the box only
    regions = [(1, 2, 6, 5), (1, 2, 6, 5)]
    assert psnr_outside(b, a, regions).tolist() == pytest.approx([100.0, 100.0])  # identical: the 1e-10 floor
    b[:, :, 0, 0] = -1.0  # one pixel outside, 0.5 off in [0, 1]: PSNR over the 64 - 15 pixels outside
    expected = 10 * math.log10(1 / (0.5 ** 2 / (64 - 15)))
    assert psnr_outside(b, a, regions) == pytest.approx(torch.full((2,), expected), rel=1e-5)


def test_the_judge_is_trained_apart_from_the_selection_classifier(tmp_path, monkeypatch):
    """Two classifiers: disjoint halves of the training images, other seeds, other SmallCNNs; each
    file loads back as what it was."""
    from hsep_utils import classifier as C

    seen = []
    real_train = C.train_classifier

    def train(model, x, y, seed, progress, **kw):
        seen.append((x.load(), seed))  # x: the training images, read as batches
        return real_train(model, x, y, seed=seed, progress=progress, **kw)

    monkeypatch.setattr(C, "train_classifier", train)
    data = _two_class_data(32, 16)
    selection, _ = C.fit_attribute_classifier(data, seed=3, progress=False, device="cpu", role="selection")
    judge, accuracy = C.fit_attribute_classifier(data, seed=3, progress=False, device="cpu", role="judge")
    (x_sel, seed_sel), (x_judge, seed_judge) = seen[0], seen[1]
    assert len(x_sel) == len(x_judge) == 16 and seed_sel != seed_judge
    assert not any(torch.equal(a, b) for a in x_sel for b in x_judge)  # no training image in both
    assert (selection.record["role"], judge.record["role"]) == ("selection", "judge")
    assert sum(p.numel() for p in judge.parameters()) != sum(p.numel() for p in selection.parameters())
    C.save_classifier(judge, accuracy, tmp_path / "judge.pt")
    loaded, _ = C.load_classifier(tmp_path / "judge.pt")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded(x), judge(x))
    assert "width 48, 4 blocks) trained from scratch for 15 epochs" in C.describe(loaded.record)


def test_the_id_metric_is_not_the_id_loss(tmp_path, monkeypatch):
    """Toy presets score ID with a second identity encoder (other identities, seed and width) than
    the one the ID loss trains against; a missing one names the command that makes it."""
    from hsep_utils import identity
    from hsep_utils.evaluation import loss_models, metric_models

    metric, loss = metric_models("toy")["id_embed"], loss_models("toy")["id_embed"]
    x = _identity_views(seed=0, n=2).flatten(0, 1)
    assert metric(x).shape[0] == loss(x).shape[0] and not torch.allclose(metric(x), loss(x), atol=1e-2)
    monkeypatch.setitem(identity.JUDGE_OPTIONS, "out", str(tmp_path / "absent"))
    missing = toy_identity_embedder(judge=True)
    assert isinstance(missing, Unavailable) and "--seed 1 --data-seed 3000000 --width 48" in missing.reason


def test_arcface_ir_se50_has_the_released_layout_and_judges_real_id(tmp_path, monkeypatch):
    """IR-SE50 in model_ir_se50.pth's key layout (43.8 M parameters, 24 units, 512·7·7 → 512), unit-norm
    embeddings of 256 px faces; metric_models scores real presets' ID with it when the file is there and
    says facenet is the loss's own network when not; a file of another layout is named."""
    from hsep_utils.arcface import IRSE50, arcface_embedder
    from hsep_utils.evaluation import metric_models
    from hsep_utils.metrics import Unavailable

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    torch.manual_seed(0)
    net = IRSE50()
    keys = net.state_dict()
    assert 43.5e6 < sum(p.numel() for p in net.parameters()) < 44.2e6 and len(net.body) == 24
    assert keys["output_layer.3.weight"].shape == (512, 512 * 7 * 7) and "output_layer.4.running_var" in keys
    assert "body.3.shortcut_layer.0.weight" in keys and "body.0.shortcut_layer.0.weight" not in keys  # 64 → 128
    assert keys["body.0.res_layer.5.fc1.weight"].shape == (4, 64, 1, 1) and keys["input_layer.2.weight"].shape == (64,)
    missing = arcface_embedder("cpu", tmp_path)
    assert isinstance(missing, Unavailable) and "model_ir_se50.pth" in missing.reason
    models = metric_models("celebahq", "cpu", arcface_weights=tmp_path)  # no facenet, AlexNet or VGG here either
    assert isinstance(models["id_embed"], Unavailable) and isinstance(models["lpips"], Unavailable)
    monkeypatch.setattr("hsep_utils.weights.facenet_embedder", lambda *a: (lambda x: x.flatten(1)))
    assert any("the ID loss's own network" in j and "model_ir_se50.pth" in j
               for j in metric_models("celebahq", "cpu", arcface_weights=tmp_path)["judges"])

    torch.save(net.state_dict(), tmp_path / "model_ir_se50.pth")
    embed = arcface_embedder("cpu", tmp_path)
    x = torch.rand(3, 3, 256, 256) * 2 - 1
    e = embed(x)
    assert e.shape == (3, 512) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    torch.testing.assert_close(embed(torch.nn.functional.interpolate(x, size=128, mode="bilinear", antialias=True)).shape,
                               e.shape)
    models = metric_models("celebahq", "cpu", arcface_weights=tmp_path)
    assert models["id_embed"].record.startswith("ArcFace") and any("ArcFace IR-SE50" in j for j in models["judges"])
    vgg = torch.nn.Identity()
    monkeypatch.setattr("hsep_utils.weights.lpips_model", lambda device, net="alex": vgg if net == "vgg" else None)
    models = metric_models("toy", "cpu")
    assert models["lpips"] is vgg and "LPIPS: VGG (the loss uses AlexNet)" in models["judges"]
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "model_ir_se50.pth")
    with pytest.raises(ValueError, match=r"model_ir_se50\.pth does not load as IR-SE50"):
        arcface_embedder("cpu", tmp_path)
