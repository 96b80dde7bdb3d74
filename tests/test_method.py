from dataclasses import replace
import math

import pytest
import torch

from hsep_utils import losses as L
from hsep_utils.edit import edit, swap_salient
from hsep_utils.ema import ema_update
from hsep_utils.mapping import ARCHITECTURES, MappingNetwork
from hsep_utils.train import TrainConfig, load_mapping, step_losses, train_mapping
from hsep_utils.train import latent_terms as T_latent_terms
from hsep_utils.train import edit_sparsity, removal_cycle, sparsity_price, swap_cycle, swap_identity

LATENT_ONLY = {**{t: 0.0 for t in L.LOSS_TERMS}, "consistency": 1.0}  # no image term: no decoder backward


def test_silence_and_consistency_by_hand():
    s = torch.tensor([1.0, 2, 3, 4]).view(1, 4, 1, 1)
    assert L.silence(s).item() == pytest.approx(7.5)
    assert L.silence(torch.zeros(2, 3, 4, 4)).item() == 0
    h = torch.randn(2, 3, 4, 4)
    assert L.consistency(h, h).item() == 0
    assert L.consistency(h + 2, h).item() == pytest.approx(4.0)


def test_bidirectional_kl_by_hand():
    assert L.bidirectional_kl(torch.zeros(3, 2), torch.zeros(5, 2)).item() == pytest.approx(0, abs=1e-7)
    p, q = [0.5, 0.5], [0.75, 0.25]
    want = sum(a * math.log(a / b) for a, b in zip(p, q)) + sum(b * math.log(b / a) for a, b in zip(p, q))
    got = L.bidirectional_kl(torch.zeros(1, 2), torch.tensor([[math.log(3), 0.0]]))
    assert got.item() == pytest.approx(want, rel=1e-5)
    # temperature divides the logits
    assert L.bidirectional_kl(torch.zeros(1, 2), torch.tensor([[2 * math.log(3), 0.0]]), 2.0).item() == \
        pytest.approx(want, rel=1e-5)


def test_kl_per_pair_asks_every_pair_to_look_alike():
    """``kl_pairing`` pair (the paper's code): the KL of row i against row i, averaged. Two pairs
    whose distributions are swapped have equal batch means (batch KL 0) but a positive per-pair KL."""
    a, b = torch.tensor([[math.log(3), 0.0]]), torch.zeros(1, 2)
    one = L.bidirectional_kl(a, b).item()
    bg, tg = torch.cat([a, b]), torch.cat([b, a])
    assert L.bidirectional_kl(bg, tg).item() == pytest.approx(0, abs=1e-6)
    assert L.bidirectional_kl(bg, tg, pairing="pair").item() == pytest.approx(one, rel=1e-5)
    # identical pairs: 0 either way; the temperature still divides the logits
    assert L.bidirectional_kl(bg, bg, pairing="pair").item() == pytest.approx(0, abs=1e-6)
    assert L.bidirectional_kl(2 * bg, 2 * tg, 2.0, pairing="pair").item() == pytest.approx(one, rel=1e-5)


def test_orthogonal_by_hand():
    e1, e2 = torch.tensor([1.0, 0]).view(1, 2, 1, 1), torch.tensor([0.0, 3]).view(1, 2, 1, 1)
    assert L.orthogonal(e1, e2).item() == pytest.approx(0)
    assert L.orthogonal(e1, 5 * e1).item() == pytest.approx(1)
    assert L.orthogonal(torch.tensor([1.0, 1]).view(1, 2, 1, 1), e1).item() == pytest.approx(0.5)
    assert L.orthogonal(e1, torch.zeros_like(e1)).item() == 0


def test_classification_by_hand():
    z = torch.zeros(2)
    assert L.classification(z, z, z, z).item() == pytest.approx(math.log(2))
    big = torch.full((2,), 30.0)
    assert L.classification(-big, -big, -big, big).item() == pytest.approx(0, abs=1e-6)
    assert L.classification(-big, -big, -big, -big).item() == pytest.approx(30 / 4, rel=1e-4)


def test_classification_as_the_papers_code_by_hand():
    """halves_pos_weight_2: ½(BCE C_bg + BCE S_bg) + ½(BCE C_t + 2·BCE S_t), each BCE a mean."""
    z = torch.zeros(2)
    assert L.classification(z, z, z, z, "halves_pos_weight_2").item() == pytest.approx(0.5 * 2 * math.log(2) +
                                                                                    0.5 * 3 * math.log(2))
    big = torch.full((2,), 30.0)
    assert L.classification(-big, -big, -big, big, "halves_pos_weight_2").item() == pytest.approx(0, abs=1e-6)
    # S_t wrong only: counted twice, with the half in front
    assert L.classification(-big, -big, -big, -big, "halves_pos_weight_2").item() == pytest.approx(30, rel=1e-4)
    with pytest.raises(ValueError, match="classification_loss must be one of"):
        TrainConfig(classification_loss="focal")


def test_identity_and_pixel_by_hand():
    a, b = torch.tensor([[1.0, 0]]), torch.tensor([[0.0, 2]])
    assert L.identity(lambda x: x, a, a).item() == pytest.approx(0, abs=1e-7)
    assert L.identity(lambda x: x, a, b).item() == pytest.approx(1)
    assert L.pixel(a, b).item() == pytest.approx(2.5)


def test_lpips_with_real_features_cached_equals_lpips():
    """train_mapping computes the real image's LPIPS features once per batch: same value, same gradient."""
    import warnings

    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False).eval().requires_grad_(False)
    torch.manual_seed(0)
    for lin in model.lins:  # random non-negative heads (untrained ones are not meaningful, only the algebra is tested)
        torch.nn.init.uniform_(lin.model[-1].weight)
    rec = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    plain = L.lpips_loss(model, rec, real)
    (g_plain,) = torch.autograd.grad(plain, rec)
    cached = L.lpips_loss(model, rec, real, L.lpips_features(model, real))
    (g_cached,) = torch.autograd.grad(cached, rec)
    assert plain.item() > 0 and cached.item() == pytest.approx(plain.item(), rel=1e-5)
    torch.testing.assert_close(g_cached, g_plain, rtol=1e-4, atol=1e-7)
    assert L.lpips_loss(model, real, real, L.lpips_features(model, real)).item() == pytest.approx(0, abs=1e-7)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_architecture_shapes_and_additive_forms(arch):
    torch.manual_seed(0)
    net = MappingNetwork(8, arch, depth=3, h_scale=2.0)
    h = torch.randn(4, 8, 5, 5)
    is_t = torch.tensor([0, 0, 1, 1], dtype=torch.bool)
    h_tilde, c, s = net(h, 300, is_t)
    assert h_tilde.shape == c.shape == s.shape == h.shape
    assert len(net.specific) == (2 if arch in "ab" else 1)
    if arch in "bd":
        torch.testing.assert_close(h_tilde, (c + s) * 2.0)
    else:
        assert not torch.allclose(h_tilde, (c + s) * 2.0)
    assert net.class_logit(c).shape == (4,) and net.kl_logits(c).shape == (4, 16)
    if arch in "ab":  # each class uses its own specific encoder
        torch.testing.assert_close(s[2:], net.specific[1](h[2:] / 2.0, torch.full((2,), 300)))
        torch.testing.assert_close(s[:2], net.specific[0](h[:2] / 2.0, torch.full((2,), 300)))


def test_unknown_architecture_and_loss_term():
    with pytest.raises(ValueError, match="'e'.*a, b, c, d"):
        MappingNetwork(8, "e")
    with pytest.raises(ValueError, match="pixl"):
        TrainConfig(lambdas={"pixl": 1})


def _data(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def _registered_pairs(diffusion, directory, batch_size):
    """Four backgrounds and four targets (``Split``s of random images) and an ``InversionCache`` in ``directory``
    with both registered, as a preset's cache holds its splits."""
    import pandas as pd

    from hsep_utils.splits import Split
    from hsep_utils.train import InversionCache

    bg, tg = (Split(pd.DataFrame({"file": [f"{c}{i}" for i in range(4)]}), _data(4, seed=seed))
              for c, seed in (("b", 1), ("t", 2)))
    cache = InversionCache(diffusion, 5, directory, batch_size=batch_size)
    for split in (bg, tg):
        cache.register(split.keys, split.x)
    return bg, tg, cache


def test_gradients_reach_only_the_mapping_network(tiny_diffusion):
    net = MappingNetwork(32, "a", depth=2)
    x = torch.randn(4, 3, 16, 16)
    is_t = torch.tensor([0, 0, 1, 1], dtype=torch.bool)
    total, terms, _, _ = step_losses(net, tiny_diffusion, x, 500, x, is_t, TrainConfig())
    total.backward()
    assert {"silence", "consistency", "kl", "orthogonal", "classification", "pixel"} <= set(terms)
    assert all(p.grad is None for p in tiny_diffusion.unet.parameters())
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_training_lowers_the_loss(tiny_diffusion, tmp_path):
    x_bg, x_tg = _data(2, seed=1), _data(2, seed=2)
    cfg = TrainConfig(arch="a", depth=2, n_steps=4, lr=1e-3, epochs=4, batch_per_class=2)
    train_mapping(tiny_diffusion, x_bg, x_tg, ["b0", "b1"], ["t0", "t1"], cfg, tmp_path, progress=False)
    import pandas as pd

    log = pd.read_csv(tmp_path / "train_log.csv")
    per_epoch = log.groupby("epoch")["total"].mean()
    assert per_epoch.iloc[-1] < per_epoch.iloc[0], per_epoch.tolist()
    assert set(log["t"]) == set(tiny_diffusion.timesteps(4))


def test_training_with_an_edit_window_starts_where_the_unedited_generation_is(tiny_diffusion, tmp_path, monkeypatch):
    """t_edit_max: updates only at t_edit <= t < t_edit_max, from the x_t that the steps above reach with
    the original h (what ``generate`` edits from)."""
    import hsep_utils.train as train

    x_bg, x_tg = _data(2, seed=1), _data(2, seed=2)
    cfg = TrainConfig(arch="a", depth=2, n_steps=5, epochs=1, batch_per_class=2, t_edit=200, t_edit_max=700)
    seen, real = {}, train.step_losses
    monkeypatch.setattr(train, "step_losses", lambda net, d, x, t, *a, **k: seen.setdefault(t, x) is None or real(
        net, d, x, t, *a, **k))
    train_mapping(tiny_diffusion, x_bg, x_tg, ["b0", "b1"], ["t0", "t1"], cfg, tmp_path, progress=False)
    window = [t for t in reversed(tiny_diffusion.timesteps(5)) if 200 <= t < 700]
    assert list(seen) == window and len(window) < 5
    _, plain = tiny_diffusion.generate(tiny_diffusion.invert(torch.cat([x_bg, x_tg]), 5), 5, return_trajectory=True)
    reached = plain.xt[plain.timesteps.index(window[0])].flatten(1)
    gaps = torch.cdist(seen[window[0]].flatten(1), reached)  # the batch holds the images in its own order
    assert gaps.min(1).values.max() < 1e-2 and gaps.max() > 1  # float noise of another batch grouping; others ~500 away
    with pytest.raises(ValueError, match="edit window"):
        train_mapping(tiny_diffusion, x_bg, x_tg, ["b0", "b1"], ["t0", "t1"], replace(cfg, t_edit=700), tmp_path / "empty",
                      progress=False)


def _killed_at_validation(n: int):
    """A ``validate`` callback that simulates a kill at its n-th call."""
    calls = []

    def validate(net):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt("simulated kill")
        return {"sr": 0.0}

    return validate


def test_training_resumes_with_identical_state(tiny_diffusion, tmp_path):
    x_bg, x_tg = _data(4, seed=3), _data(4, seed=4)
    keys_bg, keys_tg = [f"b{i}" for i in range(4)], [f"t{i}" for i in range(4)]
    cfg = TrainConfig(depth=2, n_steps=3, lr=1e-3, epochs=2, batch_per_class=2, t_edit=400)
    whole = train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / "whole", progress=False)

    crash_on_second_validation = _killed_at_validation(2)
    with pytest.raises(KeyboardInterrupt):
        train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / "cut",
                      validate=crash_on_second_validation, inversion_dir=tmp_path / "inv", progress=False)
    ck = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert (ck["epoch"], ck["batch"]) == (1, 0)
    assert len(list((tmp_path / "inv").glob("*.pt"))) == 8  # inversions cached on disk
    del ck["train_config"]["image_loss_every"]  # as written before that setting existed: still resumes
    torch.save(ck, tmp_path / "cut" / "last.pt")
    resumed = train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / "cut",
                            inversion_dir=tmp_path / "inv", progress=False)
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(load_mapping(tmp_path / "cut" / "last.pt").shared.net[0].weight, resumed.shared.net[0].weight)
    with pytest.raises(ValueError, match="trained with"):
        train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, TrainConfig(depth=3, batch_per_class=2), tmp_path / "cut",
                      progress=False)
    with pytest.raises(ValueError, match="selection classifier changed"):  # its checkpoints were ranked by another judge
        train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / "cut", progress=False,
                      validated_by={"kind": "small-cnn", "blocks": 4})
    # written before the asymmetric reverse process became the default: it was trained symmetric
    ck = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    del ck["train_config"]["asymmetric"]
    torch.save(ck, tmp_path / "cut" / "last.pt")
    with pytest.raises(ValueError, match="'asymmetric': False"):
        train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / "cut", progress=False)
    train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, replace(cfg, asymmetric=False), tmp_path / "cut",
                  progress=False)


def test_ema_update_by_hand():
    ema, p = [torch.tensor([0.0])], [torch.tensor([1.0])]
    ema_update(ema, p, decay=0.9, step=0)  # warm-up: min(0.9, 1/10) = 0.1 kept, 0.9 moved
    assert ema[0].item() == pytest.approx(0.9)
    ema = [torch.tensor([0.0])]
    ema_update(ema, p, decay=0.9, step=100)  # min(0.9, 101/110) = 0.9 kept
    assert ema[0].item() == pytest.approx(0.1)


def test_validation_and_the_returned_network_are_in_eval_mode(tiny_diffusion, tmp_path):
    """Edits run in eval mode everywhere (a loaded checkpoint is): validation too, and the network training
    returns, with or without a weight average; training itself goes on in train mode after each validation."""
    x_bg, x_tg = _data(4, seed=3), _data(4, seed=4)
    keys_bg, keys_tg = [f"b{i}" for i in range(4)], [f"t{i}" for i in range(4)]
    for ema_decay in (0.0, 0.9):
        cfg = TrainConfig(depth=2, n_steps=3, lr=1e-3, epochs=2, batch_per_class=2, t_edit=400, ema_decay=ema_decay)
        modes = []
        net = train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / str(ema_decay), progress=False,
                            validate=lambda n: modes.append(n.training) or {"sr": 0.0})
        assert modes and not any(modes) and not net.training


def test_ema_weights_are_what_is_validated_saved_and_resumed(tiny_diffusion, tmp_path):
    x_bg, x_tg = _data(4, seed=3), _data(4, seed=4)
    keys_bg, keys_tg = [f"b{i}" for i in range(4)], [f"t{i}" for i in range(4)]
    cfg = TrainConfig(depth=2, n_steps=3, lr=1e-3, epochs=2, batch_per_class=2, t_edit=400, ema_decay=0.9)
    seen = []
    whole = train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / "whole", progress=False,
                          validate=lambda net: seen.append(net) or {"sr": 0.0})
    ck = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    ema_w, raw_w = ck["net"]["shared.net.0.weight"], ck["train_net"]["shared.net.0.weight"]
    assert not torch.equal(ema_w, raw_w)  # the average lags the trained weights
    assert torch.equal(whole.shared.net[0].weight, ema_w) and torch.equal(seen[-1].shared.net[0].weight, ema_w)
    assert torch.equal(load_mapping(tmp_path / "whole" / "last.pt").shared.net[0].weight, ema_w)

    with pytest.raises(KeyboardInterrupt):
        train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / "cut",
                      validate=_killed_at_validation(2), inversion_dir=tmp_path / "inv", progress=False)
    resumed = train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / "cut",
                            inversion_dir=tmp_path / "inv", progress=False)
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    for part in ("net", "train_net"):
        for k, v in ck[part].items():
            assert torch.equal(v, cut[part][k]), (part, k)
    assert torch.equal(resumed.shared.net[0].weight, ema_w)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_edits_shapes_and_reconstruction_with_additive_identity(tiny_diffusion):
    net = MappingNetwork(32, "b", depth=1).eval()
    with torch.no_grad():  # C = h / scale and S = 0, so h̃ = h: reconstruction equals plain generation
        for m in (net.shared, *net.specific):
            m.net[0].weight.zero_()
            m.net[0].bias.zero_()
        net.shared.net[0].weight[:, :32, 1, 1] = torch.eye(32)
    xT = torch.randn(2, 3, 16, 16)
    is_t = torch.tensor([0, 1], dtype=torch.bool)
    rec = edit(tiny_diffusion, net, xT, is_t, 5, "reconstruct")
    torch.testing.assert_close(rec, tiny_diffusion.generate(xT, 5), atol=1e-3, rtol=1e-3)
    added, removed = swap_salient(tiny_diffusion, net, xT[:1], xT[1:], 5)
    assert added.shape == removed.shape == (1, 3, 16, 16)
    only_added, none = swap_salient(tiny_diffusion, net, xT[:1], xT[1:], 5, remove=False)  # adding alone
    assert none is None
    torch.testing.assert_close(only_added, added)
    with pytest.raises(ValueError, match="donor"):
        edit(tiny_diffusion, net, xT, is_t, 5, "swap")


def test_residual_edit_changes_the_image_only_through_the_change_of_s(tiny_diffusion):
    """edit_form residual: h + f(C, α·S′) − f(C, S). With S′ = S (reconstruct, or a swap whose donor is the image
    itself) it is the plain generation whatever the network, even a random one whose f(C, S) is far from h; a
    changed S edits the image, and not as the paper's form (h̃ in place of h) does."""
    torch.manual_seed(4)
    net = MappingNetwork(32, "c", depth=1).eval()  # random: its reconstruction f(C, S) is not h
    xT = torch.randn(2, 3, 16, 16)
    is_t = torch.tensor([0, 1], dtype=torch.bool)
    plain = tiny_diffusion.generate(xT, 5)
    close = dict(atol=1e-3, rtol=0)  # h + a − a rounds
    torch.testing.assert_close(edit(tiny_diffusion, net, xT, is_t, 5, "reconstruct", residual=True), plain, **close)
    own_donor = edit(tiny_diffusion, net, xT, is_t, 5, "swap", donor_xT=xT, donor_is_target=is_t, residual=True)
    torch.testing.assert_close(own_donor, plain, **close)
    assert (edit(tiny_diffusion, net, xT, is_t, 5, "reconstruct") - plain).abs().max() > 0.05  # the paper's form
    removed = {r: edit(tiny_diffusion, net, xT, is_t, 5, "remove", residual=r) for r in (False, True)}
    assert (removed[True] - plain).abs().max() > 1e-3  # S = 0 edits
    assert (removed[True] - removed[False]).abs().max() > 1e-3
    added, _ = swap_salient(tiny_diffusion, net, xT[:1], xT[1:], 5, remove=False, residual=True)
    assert (added - plain[:1]).abs().max() > 1e-3


def test_removal_strength_scales_s_from_own_to_zero_and_past_it(tiny_diffusion):
    """Removing at strength β takes S′ = (1 − β)·S: β = 0 keeps the image's own S (its reconstruction), β = 1
    is the paper's S = 0, β = 2 takes −S; swap_salient's removal takes β, not the adding α."""
    torch.manual_seed(5)
    net = MappingNetwork(32, "c", depth=1).eval()
    xT = torch.randn(2, 3, 16, 16)
    is_t = torch.ones(2, dtype=torch.bool)
    remove = {b: edit(tiny_diffusion, net, xT, is_t, 5, "remove", alpha=b) for b in (0.0, 1.0, 2.0)}
    torch.testing.assert_close(remove[0.0], edit(tiny_diffusion, net, xT, is_t, 5, "reconstruct"))
    assert torch.equal(remove[1.0], edit(tiny_diffusion, net, xT, is_t, 5, "remove"))
    assert (remove[2.0] - remove[1.0]).abs().max() > 1e-3
    _, removed = swap_salient(tiny_diffusion, net, xT, xT, 5, alpha=2.0)
    assert torch.equal(removed, remove[1.0])  # α is the adding strength only
    nothing, removed = swap_salient(tiny_diffusion, net, None, xT, 5, removal_strength=2.0, add=False)
    assert nothing is None and torch.equal(removed, remove[2.0])


def test_swap_from_stored_donor_trajectories_matches_generating_the_donors_with_half_the_passes(tiny_diffusion,
                                                                                                  monkeypatch):
    import hsep_utils.diffusion as diffusion_module
    from hsep_utils.train import InversionCache

    torch.manual_seed(3)
    net = MappingNetwork(32, "a", depth=1).eval()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    keys = [f"k{i}" for i in range(4)]
    cache = InversionCache(tiny_diffusion, 5)
    xT, stored = cache(keys, x), cache.h_trajectories(keys, x)
    _, traj = tiny_diffusion.generate(xT, 5, return_trajectory=True)
    h = torch.stack(traj.h, 1)  # what the cache stores, before its float16 rounding
    torch.testing.assert_close(stored.float(), h, atol=0, rtol=1e-3)
    bg, tg = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    encoded, encode = [], diffusion_module.encode
    monkeypatch.setattr(diffusion_module, "encode", lambda unet, x, t: encoded.append(len(x)) or encode(unet, x, t))
    swaps = {}
    for name, donors in (("riding", dict(donor_xT=xT[2:])), ("stored", dict(donor_h=h[2:]))):
        encoded.clear()
        swaps[name] = edit(tiny_diffusion, net, xT[:2], bg, 5, "swap", t_edit=200, donor_is_target=tg, alpha=1.5,
                           **donors)
        swaps[name + " passes"] = sum(encoded)
    torch.testing.assert_close(swaps["stored"], swaps["riding"], atol=1e-3, rtol=0)
    assert (swaps["riding passes"], swaps["stored passes"]) == (20, 10)  # 2 images (+ 2 donors) x 5 steps
    with pytest.raises(ValueError, match="donor"):
        edit(tiny_diffusion, net, xT[:2], bg, 5, "swap", donor_h=h[2:3], donor_is_target=tg)
    added, removed = swap_salient(tiny_diffusion, net, xT[:2], xT[2:], 5, h_tg=h[2:])
    added_riding, removed_riding = swap_salient(tiny_diffusion, net, xT[:2], xT[2:], 5)
    torch.testing.assert_close(added, added_riding, atol=1e-3, rtol=0)
    assert torch.equal(removed, removed_riding)


def test_edits_start_from_the_kept_window_state_with_the_same_bytes_and_fewer_passes(tiny_diffusion, tmp_path,
                                                                                      monkeypatch):
    """The unedited steps above ``t_edit_max`` are the same in every edit of an image: ``edit_pairs``
    generates them once per image (kept beside its inversion) and edits from there, with the bytes
    of generating every edit from xT."""
    import hsep_utils.diffusion as diffusion_module
    from hsep_utils.split_edits import edit_pairs

    xT = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    top = tiny_diffusion.generate(xT, 5, stop_below=600)
    assert torch.equal(tiny_diffusion.generate(top, 5, start_below=600), tiny_diffusion.generate(xT, 5))
    net = MappingNetwork(32, "a", depth=1).eval()
    bg, tg, cache = _registered_pairs(tiny_diffusion, tmp_path / "inv", batch_size=4)
    encoded, encode = [], diffusion_module.encode
    monkeypatch.setattr(diffusion_module, "encode", lambda unet, x, t: encoded.append(len(x)) or encode(unet, x, t))
    edit_pairs(tiny_diffusion, net, cache, bg, tg, 5, 0, alpha=1.5, t_edit_max=600)  # fills the cache
    assert len(list((tmp_path / "inv").glob("*.x600.pt"))) == 8
    encoded.clear()
    added, removed = edit_pairs(tiny_diffusion, net, cache, bg, tg, 5, 0, alpha=1.5, t_edit_max=600)
    assert sum(encoded) == 2 * 4 * 3  # adding and removing, 4 images each, the 3 steps below t = 600 of 5
    whole = swap_salient(tiny_diffusion, net, cache(bg.keys, bg.x), cache(tg.keys, tg.x), 5, 0, 1.5, batch_size=4,
                         h_tg=cache.h_trajectories(tg.keys, tg.x), t_edit_max=600)
    assert torch.equal(added, whole[0]) and torch.equal(removed, whole[1])
    with pytest.raises(ValueError, match="t_edit_max"):
        edit(tiny_diffusion, net, xT, torch.ones(2, dtype=torch.bool), 5, "remove", from_window=True)


def test_validation_reconstructs_only_its_first_images_per_class_when_asked(tiny_diffusion):
    import pandas as pd

    from hsep_utils.split_edits import reconstruction_psnr
    from hsep_utils.splits import Split
    from hsep_utils.train import InversionCache

    torch.manual_seed(4)
    net = MappingNetwork(32, "a", depth=1).eval()
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    split = lambda lo, hi: Split(rows=pd.DataFrame({"file": [f"k{i}" for i in range(lo, hi)]}), x=x[lo:hi])  # noqa: E731
    bg, tg, cache = split(0, 3), split(3, 6), InversionCache(tiny_diffusion, 4)
    first = reconstruction_psnr(tiny_diffusion, net, cache, split(0, 1), split(3, 4), 4, 0)
    assert reconstruction_psnr(tiny_diffusion, net, cache, bg, tg, 4, 0, n_per_class=1) == pytest.approx(first, abs=1e-4)
    assert reconstruction_psnr(tiny_diffusion, net, cache, bg, tg, 4, 0, n_per_class=9) == pytest.approx(
        reconstruction_psnr(tiny_diffusion, net, cache, bg, tg, 4, 0), abs=1e-4)


def test_common_adversary_reverses_gradients_into_c():
    torch.manual_seed(0)
    net = MappingNetwork(4, "a", depth=1)
    c = torch.randn(6, 4, 3, 3, requires_grad=True)
    y = torch.tensor([0, 0, 0, 1, 1, 1.0])
    loss = torch.nn.functional.binary_cross_entropy_with_logits(net.adversary_logit(c), y)
    loss.backward()
    g_reversed, g_head = c.grad.clone(), net.adversary.weight.grad.clone()
    c.grad = None
    net.zero_grad()
    plain = torch.nn.functional.binary_cross_entropy_with_logits(net.adversary(c.mean((2, 3))).squeeze(1), y)
    plain.backward()
    torch.testing.assert_close(g_reversed, -c.grad)  # the encoders ascend the adversary's loss
    torch.testing.assert_close(g_head, net.adversary.weight.grad)  # the adversary itself descends it


def test_conv_adversary_sees_where_things_are():
    """Two C maps with the same channel means, one class with a feature on the left, the other on the right:
    the pooled adversary cannot tell them apart at all, the conv adversary learns to."""
    torch.manual_seed(0)
    c = torch.zeros(8, 4, 3, 3)
    c[:4, 0, :, 0], c[4:, 0, :, 2] = 1.0, 1.0  # background: channel 0 on the left; target: on the right
    y = torch.tensor([0.0] * 4 + [1.0] * 4)
    losses = {}
    for head in ("pooled", "conv"):
        net = MappingNetwork(4, "c", depth=1, adversary_head=head)
        assert MappingNetwork(**net.config()).adversary_head == head  # rebuilt from a checkpoint's config
        opt = torch.optim.Adam(net.adversary.parameters(), lr=1e-2)
        for _ in range(200):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net.adversary_logit(c), y)
            loss.backward()
            opt.step()
        losses[head] = loss.item()
    assert losses["pooled"] > 0.69  # log 2: chance, the pooled features are identical
    assert losses["conv"] < 0.1


def test_fusion_depth_adds_blocks_and_keeps_old_checkpoints_loadable():
    """``fusion_depth`` 1 is the one-conv fusion every committed checkpoint holds (its config has no such key and
    its state loads as it was); more blocks rebuild from a checkpoint's config; 0 is refused."""
    one = MappingNetwork(4, "c", depth=1)
    old_config = {k: v for k, v in one.config().items() if k != "fusion_depth"}
    MappingNetwork(**old_config).load_state_dict(one.state_dict())  # strict: the same keys and shapes
    deep = MappingNetwork(4, "c", depth=1, fusion_depth=3)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in deep.fusion) == 3
    MappingNetwork(**deep.config()).load_state_dict(deep.state_dict())
    with pytest.raises(ValueError, match="fusion_depth"):
        MappingNetwork(4, "c", depth=1, fusion_depth=0)


class _ChannelSplit:
    """A stand-in mapping network: C is h's first half of channels, S its second, and combine puts them
    back (``keeps_s``) or drops S (a fusion that ignores the salient code)."""

    shared, specific = torch.nn.Identity(), torch.nn.ModuleList()  # no encoder weights
    h_scale = 1.0

    def __init__(self, keeps_s: bool) -> None:
        self.keeps_s = keeps_s

    def common(self, h, t):
        return h * torch.tensor([1.0, 1, 0, 0]).view(1, 4, 1, 1)

    def split(self, h, t, is_target):
        return self.common(h, t), h * torch.tensor([0.0, 0, 1, 1]).view(1, 4, 1, 1)

    def combine(self, c, s):
        return c + s if self.keeps_s else c


def test_swap_cycle_is_zero_when_the_swap_carries_the_donors_s_and_not_when_it_drops_it():
    """The swap cycle scores whether a background given the i-th target's S reads back as that S with
    its own C: 0 for a fusion that writes S into h̃ (either edit form), ≥ 1 (S lost entirely) for one
    that ignores S; it is a term of the latent loss only when its weight is set, and trains the fusion only."""
    torch.manual_seed(0)
    h = torch.randn(6, 4, 3, 3)
    is_target = torch.tensor([0, 1, 0, 1, 0, 1]).bool()
    c, s = _ChannelSplit(True).split(h, 500, is_target)
    for residual in (False, True):
        assert swap_cycle(_ChannelSplit(True), h, 500, c, s, is_target, residual).item() == pytest.approx(0, abs=1e-6)
        assert swap_cycle(_ChannelSplit(False), h, 500, c, s, is_target, residual).item() >= 1.0
    other = torch.tensor([2, 1, 4, 3, 0, 5])  # the residual form adds h: another background's h gives another C back
    assert swap_cycle(_ChannelSplit(True), h[other], 500, c, s, is_target, True).item() > 0.1
    net = MappingNetwork(4, "c", depth=1)
    assert "swap_cycle" not in T_latent_terms(net, h, 500, is_target, TrainConfig(arch="c"))[1]
    terms = T_latent_terms(net, h, 500, is_target, TrainConfig(arch="c", swap_cycle=1.0))[1]
    terms["swap_cycle"].backward()  # only the fusion learns from it: encoders that may move make S alike for both classes
    assert net.fusion[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for m in (net.shared, net.specific) for p in m.parameters())
    assert all(p.requires_grad for p in net.parameters())


def test_edit_sparsity_prices_what_an_edit_changes_beyond_s():
    """The edit sparsity is the mean absolute change the adding swap and the removal make to h: 0 for a fusion
    that ignores S (no edit changes anything), larger when S also holds what C holds (the rest of the image,
    which the edits then carry) than when it holds only its own channels; it is a term only when its weight is
    set, and both the encoders and the fusion learn from it."""
    torch.manual_seed(0)
    h = torch.randn(6, 4, 3, 3)
    is_target = torch.tensor([0, 1, 0, 1, 0, 1]).bool()
    c, s = _ChannelSplit(True).split(h, 500, is_target)
    assert edit_sparsity(_ChannelSplit(False), h, c, s, is_target, True).item() == pytest.approx(0, abs=1e-6)
    for residual in (False, True):
        clean = edit_sparsity(_ChannelSplit(True), h, c, s, is_target, residual).item()
        leaky = edit_sparsity(_ChannelSplit(True), h, c, h, is_target, residual).item()  # S holds every channel
        assert leaky > clean > 0.1
    net = MappingNetwork(4, "c", depth=1)
    assert "edit_sparsity" not in T_latent_terms(net, h, 500, is_target, TrainConfig(arch="c"))[1]
    terms = T_latent_terms(net, h, 500, is_target, TrainConfig(arch="c", edit_sparsity=1.0))[1]
    terms["edit_sparsity"].backward()
    assert net.fusion[0].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.specific.parameters())


class _WholeH:
    """A stand-in mapping network whose codes are h itself: all of it in C (``in_salient`` False: no edit
    changes anything) or all of it in S (a target's S then brings its whole image to a swap)."""

    def __init__(self, in_salient: bool) -> None:
        self.in_salient = in_salient

    def split(self, h, t, is_target):
        return (torch.zeros_like(h), h) if self.in_salient else (h, torch.zeros_like(h))

    def combine(self, c, s):
        return c + s


def test_sparsity_price_by_positions_costs_a_spread_change_more():
    """Two changes of the same L1: four channels at one position, one channel at four positions. The element price
    is the same (0.25); the position price is half for the concentrated one (0.25 against 0.5), and equals the
    element price for a change of one size everywhere."""
    here, spread = torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
    here[0, :, 0, 0] = 1.0
    spread[0, 0] = 1.0
    assert sparsity_price(here).item() == pytest.approx(sparsity_price(spread).item())
    assert sparsity_price(here, "positions").item() == pytest.approx(0.25, abs=1e-5)
    assert sparsity_price(spread, "positions").item() == pytest.approx(0.5, abs=1e-5)
    assert sparsity_price(torch.ones(2, 4, 3, 3), "positions").item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="edit_sparsity_groups"):
        TrainConfig(edit_sparsity_groups="channels")


def test_swap_identity_prices_what_a_swap_brings_beyond_the_attribute(tiny_diffusion):
    """The swap identity compares the x0 a background predicts once given a target's S with the background:
    0 when the swap changes nothing of h, above 0 when the target's S is its whole h (the residual swap then
    hands the background the target's h); a term of ``step_losses`` only when its weight is set, and one the
    encoders and the fusion learn from."""
    from hsep_utils.diffusion import predicted_x0
    from hsep_utils.hspace import decode, encode

    torch.manual_seed(0)
    x = torch.randn(4, 3, 16, 16)
    is_t = torch.tensor([0, 1, 0, 1], dtype=torch.bool)
    bg = torch.tensor([0, 2])
    enc = encode(tiny_diffusion.unet, x, 500)
    with torch.no_grad():
        x_real = x.clone()
        x_real[bg] = predicted_x0(x[bg], decode(tiny_diffusion.unet, enc.rows(bg)), tiny_diffusion.alpha(500, x))
        flat = lambda im: im.flatten(1)  # noqa: E731 — an "identity encoder" that sees every pixel
        kept = swap_identity(_WholeH(False), tiny_diffusion, enc, x, 500, is_t, True, flat, x_real).item()
        brought = swap_identity(_WholeH(True), tiny_diffusion, enc, x, 500, is_t, True, flat, x_real).item()
    assert kept == pytest.approx(0, abs=1e-5)
    assert brought > 1e-3
    net = MappingNetwork(32, "c", depth=1)
    assert "swap_identity" not in step_losses(net, tiny_diffusion, x, 500, x_real, is_t, TrainConfig(arch="c"), flat)[1]
    total, terms, _, _ = step_losses(net, tiny_diffusion, x, 500, x_real, is_t, TrainConfig(arch="c", swap_identity=1.0),
                                     flat)
    terms["swap_identity"].backward()
    assert net.fusion[0].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.specific.parameters())


def test_removal_cycle_asks_c_to_hold_only_what_survives_the_removal():
    """A target's C must equal the C of its own removal edit: 0 when C holds only what both classes show
    (the channel split), not when C also holds the salient channels that removal takes away; the gradient
    goes into the target's C, toward dropping them, and the re-encoded removal is held fixed."""
    torch.manual_seed(0)
    h = torch.randn(6, 4, 3, 3)
    is_target = torch.tensor([0, 1, 0, 1, 0, 1]).bool()
    clean = _ChannelSplit(True)
    c, s = clean.split(h, 500, is_target)
    for residual in (False, True):
        assert removal_cycle(clean, h, 500, c, s, is_target, residual).item() == pytest.approx(0, abs=1e-6)
    leaky_c = h.clone().requires_grad_(True)  # C holds every channel, the salient ones too
    leaky = removal_cycle(clean, h, 500, leaky_c, s, is_target, False)
    assert leaky.item() > 0.3
    leaky.backward()
    salient_part = leaky_c.grad[is_target][:, 2:]
    assert (salient_part * h[is_target][:, 2:]).sum() > 0  # descending it shrinks the salient channels of C
    assert leaky_c.grad[~is_target].abs().sum() == 0  # backgrounds are not asked anything
    assert removal_cycle(clean, h, 500, c, s, torch.zeros(6, dtype=torch.bool), False).item() == 0
    net = MappingNetwork(4, "c", depth=1)
    assert "removal_cycle" not in T_latent_terms(net, h, 500, is_target, TrainConfig(arch="c"))[1]
    assert "removal_cycle" in T_latent_terms(net, h, 500, is_target, TrainConfig(arch="c", removal_cycle=1.0))[1]


def test_later_epochs_perform_no_inversion(tiny_diffusion, tmp_path, monkeypatch):
    """Inversions are cached: only the first epoch (and the h-scale estimate's first batch) invert."""
    inverted = []
    real_invert = tiny_diffusion.invert
    monkeypatch.setattr(tiny_diffusion, "invert", lambda x0, n, **kw: inverted.append(len(x0)) or real_invert(x0, n, **kw))
    x_bg, x_tg = _data(4, seed=1), _data(4, seed=2)
    keys_bg, keys_tg = [f"b{i}" for i in range(4)], [f"t{i}" for i in range(4)]
    cfg = TrainConfig(arch="d", depth=1, n_steps=3, epochs=1, batch_per_class=2, lambdas=LATENT_ONLY)
    train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / "one", progress=False)
    assert sum(inverted) == 8  # every image exactly once
    inverted.clear()
    cfg3 = TrainConfig(arch="d", depth=1, n_steps=3, epochs=3, batch_per_class=2, lambdas=LATENT_ONLY)
    train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg3, tmp_path / "three", progress=False)
    assert sum(inverted) == 8  # three epochs, still each image once


def test_best_checkpoint_needs_usable_reconstructions(tiny_diffusion, tmp_path):
    """A network that wrecks images can "succeed" at swapping in a classifier's eyes: it must not be
    picked over one that reconstructs (selection_key), and without usable ones the best reconstruction wins."""
    from hsep_utils.train import selection_key

    wrecked, usable = dict(sr=0.9, sr_min=0.8, psnr_rec=12.0), dict(sr=0.4, sr_min=0.3, psnr_rec=25.0)
    assert selection_key(usable, 20.0) > selection_key(wrecked, 20.0)
    assert selection_key(dict(usable, sr_min=0.5), 20.0) > selection_key(usable, 20.0)
    assert selection_key(dict(wrecked, psnr_rec=14.0), 20.0) > selection_key(wrecked, 20.0)  # none usable: PSNR ranks
    assert selection_key(dict(sr=0.5), 20.0) > selection_key(dict(sr=float("nan")), 20.0)  # no PSNR: SR ranks

    x_bg, x_tg = _data(4, seed=3), _data(4, seed=4)
    scores = iter([dict(sr=0.9, sr_min=0.9, psnr_rec=10.0), dict(sr=0.2, sr_min=0.2, psnr_rec=30.0),
                   dict(sr=0.8, sr_min=0.8, psnr_rec=12.0)])
    cfg = TrainConfig(depth=2, n_steps=3, epochs=3, batch_per_class=4)
    net = train_mapping(tiny_diffusion, x_bg, x_tg, [f"b{i}" for i in range(4)], [f"t{i}" for i in range(4)], cfg,
                        tmp_path, validate=lambda net: next(scores), progress=False)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert (best["epoch"], best["best"]) == (1, [1.0, 0.2])  # the second validation: the only usable one
    from hsep_utils.train import checkpoint_origin

    assert checkpoint_origin(tmp_path / "best.pt") == ("the network after 2 per-step batches; the validation after 3 "
                                                       "per-step batches ranked no higher")
    assert checkpoint_origin(tmp_path / "absent.pt") is None
    assert not all(torch.equal(v, net.state_dict()[k]) for k, v in best["net"].items())


def test_image_losses_every_kth_step_count_back_from_the_last(tiny_diffusion, tmp_path, monkeypatch):
    """``image_loss_every`` = k: image terms (and the decoder's backward) only on every k-th step,
    the step closest to x0 always among them; k = 1 is the paper's every step."""
    assert [TrainConfig(image_loss_every=1).image_weight(i, 5) > 0 for i in range(5)] == [True] * 5
    assert [TrainConfig(image_loss_every=2).image_weight(i, 5) > 0 for i in range(5)] == [True, False, True, False, True]
    assert [TrainConfig(image_loss_every=3).image_weight(i, 5) > 0 for i in range(5)] == [False, True, False, False, True]
    with pytest.raises(ValueError, match="image_loss_every"):
        TrainConfig(image_loss_every=0)

    net = MappingNetwork(32, "a", depth=2)
    x, is_t = torch.randn(4, 3, 16, 16), torch.tensor([0, 0, 1, 1], dtype=torch.bool)
    total, terms, eps, _ = step_losses(net, tiny_diffusion, x, 500, x, is_t, TrainConfig(), image_weight=0.0)
    assert set(terms) == set(L.LATENT_TERMS) and not eps.requires_grad
    total.backward()  # the latent terms alone still train the mapping network
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())

    x_bg, x_tg = _data(2, seed=1), _data(2, seed=2)
    cfg = TrainConfig(arch="a", depth=2, n_steps=5, batch_per_class=2, image_loss_every=2)
    train_mapping(tiny_diffusion, x_bg, x_tg, ["b0", "b1"], ["t0", "t1"], cfg, tmp_path, progress=False)
    import pandas as pd

    log = pd.read_csv(tmp_path / "train_log.csv")
    assert log["pixel"].notna().tolist() == [True, False, True, False, True]  # t = 999 … 0
    assert log["t"].iloc[-1] == 0 and log["silence"].notna().all()


def test_latent_warmup_trains_on_the_unedited_h_first_and_is_not_repeated_on_resume(tiny_diffusion, tmp_path,
                                                                                    monkeypatch):
    import pandas as pd

    from hsep_utils import train as T

    x_bg, x_tg = _data(4, seed=5), _data(4, seed=6)
    keys_bg, keys_tg = [f"b{i}" for i in range(4)], [f"t{i}" for i in range(4)]
    # the pool: h of each image's unedited generation from its inversion, step by step, in float16
    cache = T.InversionCache(tiny_diffusion, 4, tmp_path / "inv", batch_size=3)
    pool = cache.h_trajectories(keys_bg, x_bg)
    _, traj = tiny_diffusion.generate(tiny_diffusion.invert(x_bg, 4), 4, return_trajectory=True)
    assert pool.shape == (4, 4, *traj.h[0].shape[1:]) and pool.dtype == torch.float16
    for k in range(4):
        torch.testing.assert_close(pool[:, k].float(), traj.h[k], atol=2e-2, rtol=1e-2)
    assert len(list((tmp_path / "inv").glob("*.n4.h.pt"))) == 4
    with monkeypatch.context() as m:  # a later run reads them back instead of generating
        m.setattr(tiny_diffusion, "generate", lambda *a, **k: pytest.fail("generated again"))
        again = T.InversionCache(tiny_diffusion, 4, tmp_path / "inv").h_trajectories(keys_bg[::-1], x_bg.flip(0))
    assert torch.equal(again, pool.flip(0))

    runs = []
    real_warmup = T.latent_warmup
    monkeypatch.setattr(T, "latent_warmup", lambda *a, **k: runs.append(1) or real_warmup(*a, **k))
    crash_on_second_validation = _killed_at_validation(2)
    cfg = TrainConfig(depth=2, n_steps=4, lr=1e-3, batch_per_class=2, t_edit=400, validate_every=1,
                      latent_warmup_steps=40, latent_warmup_pool=3)
    with pytest.raises(KeyboardInterrupt):
        T.train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path, validate=crash_on_second_validation,
                        inversion_dir=tmp_path / "inv", progress=False)
    warm = pd.read_csv(tmp_path / "warmup_log.csv")
    assert len(warm) == 40 and set(warm["t"]) <= {t for t in tiny_diffusion.timesteps(4) if t >= 400}
    assert warm["consistency"].iloc[-10:].mean() < warm["consistency"].iloc[:10].mean()
    assert pd.read_csv(tmp_path / "val_log.csv")["batches"].tolist() == [0]  # validated right after the warm-up
    assert torch.load(tmp_path / "last.pt", weights_only=True)["batch"] == 0
    assert T.checkpoint_origin(tmp_path / "best.pt") == "the latent warm-up's network (validated before any per-step batch)"
    T.train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path, progress=False)
    assert runs == [1]  # the resume starts after the warm-up
    assert T.checkpoint_origin(tmp_path / "best.pt") == "the network after 2 per-step batches (after the latent warm-up)"
    from hsep_utils.plotting import plot_training

    fig = plot_training(tmp_path)
    assert [ax.get_title() for ax in fig.axes] == [" latent warm-up", " training losses", "validation SR"]
    assert (tmp_path / "loss_curves.png").exists()
    assert len(pd.read_csv(tmp_path / "train_log.csv")) == 2 * 2  # both batches, at t = 999 and 666 (≥ t_edit)
    with pytest.raises(ValueError, match="latent_warmup_steps"):
        TrainConfig(latent_warmup_steps=-1)


def test_train_batches_zero_keeps_the_warm_ups_network_and_runs_no_per_step_batch(tiny_diffusion, tmp_path, monkeypatch):
    """``train_batches`` 0 (toy-glasses' default): the latent warm-up and its validation, then nothing — the same
    warm-up as a run that goes on to per-step batches, no step of the U-Net's per-step training, said by
    ``checkpoint_origin`` and the training plot; a resume trains nothing more. 0 without a warm-up is refused."""
    import pandas as pd

    from hsep_utils import train as T
    from hsep_utils.plotting import plot_training

    x_bg, x_tg = _data(4, seed=5), _data(4, seed=6)
    keys_bg, keys_tg = [f"b{i}" for i in range(4)], [f"t{i}" for i in range(4)]
    common = dict(depth=1, n_steps=3, batch_per_class=2, latent_warmup_steps=5, latent_warmup_pool=3)
    calls = []

    def validate(net):
        calls.append(1)
        return {"sr": 0.5}

    T.train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, TrainConfig(max_batches=1, **common), tmp_path / "one",
                    inversion_dir=tmp_path / "inv", progress=False)
    monkeypatch.setattr(T, "step_losses", lambda *a, **k: pytest.fail("a per-step batch ran"))
    only = tmp_path / "warm-up"
    T.train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, TrainConfig(max_batches=0, **common), only,
                    validate=validate, inversion_dir=tmp_path / "inv", progress=False)
    assert calls == [1] and pd.read_csv(only / "val_log.csv")["batches"].tolist() == [0]
    assert (only / "warmup_log.csv").read_bytes() == (tmp_path / "one" / "warmup_log.csv").read_bytes()
    assert not (only / "train_log.csv").exists()
    assert T.checkpoint_origin(only / "best.pt") == "the latent warm-up's network (the recipe runs no per-step batch)"
    assert [ax.get_title() for ax in plot_training(only).axes] == [" latent warm-up", "validation SR"]
    best = (only / "best.pt").read_bytes()
    T.train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, TrainConfig(max_batches=0, **common), only,
                    validate=validate, inversion_dir=tmp_path / "inv", progress=False)
    assert calls == [1] and (only / "best.pt").read_bytes() == best  # read back, not trained again
    for bad in (dict(max_batches=0), dict(max_batches=-1, latent_warmup_steps=5)):
        with pytest.raises(ValueError, match="max_batches"):
            TrainConfig(**bad)

def test_training_walks_the_inversion_groups_one_at_a_time(tiny_diffusion, tmp_path):
    from hsep_utils.train import epoch_order, train_mapping

    order = epoch_order(10, 4, torch.Generator().manual_seed(0)).tolist()
    assert sorted(order) == list(range(10))  # every image once an epoch ...
    groups = [i // 4 for i in order]
    assert groups == sorted(groups, key=groups.index)  # ... each group's images one after another

    # one batch (and a warm-up pool of as many images) inverts one group per class, not a group per image
    x_bg, x_tg = _data(12, seed=5), _data(12, seed=6)
    keys_bg, keys_tg = [f"b{i}" for i in range(12)], [f"t{i}" for i in range(12)]
    cfg = TrainConfig(depth=1, n_steps=3, batch_per_class=3, max_batches=1, latent_warmup_steps=2, latent_warmup_pool=3)
    train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / "run", inversion_dir=tmp_path / "inv",
                  progress=False, eval_batch_size=4)
    inverted = sorted(p.name.split(".")[0] for p in (tmp_path / "inv").glob("*.n3.g4.pt"))
    assert len(inverted) == 8 and sum(k.startswith("b") for k in inverted) == 4


def test_latent_warmup_runs_at_its_own_learning_rate_and_training_goes_on_at_lr(tiny_diffusion, tmp_path):
    import pandas as pd

    from hsep_utils.train import train_mapping

    x_bg, x_tg = _data(4, seed=5), _data(4, seed=6)
    keys_bg, keys_tg = [f"b{i}" for i in range(4)], [f"t{i}" for i in range(4)]

    def run(name: str, **kw) -> tuple[pd.DataFrame, float]:
        cfg = TrainConfig(depth=1, n_steps=3, batch_per_class=2, max_batches=1, latent_warmup_steps=6,
                          latent_warmup_pool=2, **kw)
        train_mapping(tiny_diffusion, x_bg, x_tg, keys_bg, keys_tg, cfg, tmp_path / name, inversion_dir=tmp_path / "inv",
                      progress=False)
        lr = torch.load(tmp_path / name / "last.pt", weights_only=True)["opt"]["param_groups"][0]["lr"]
        return pd.read_csv(tmp_path / name / "warmup_log.csv"), lr

    fast, lr_after = run("fast", lr=1e-4, latent_warmup_lr=1e-2)
    same, _ = run("same", lr=1e-2)
    slow, _ = run("slow", lr=1e-4)
    pd.testing.assert_frame_equal(fast, same)  # the warm-up ran at latent_warmup_lr ...
    assert not fast["total"].equals(slow["total"])
    assert lr_after == 1e-4  # ... and the optimiser is back at lr for the per-step training
    with pytest.raises(ValueError, match="latent_warmup_lr"):
        TrainConfig(latent_warmup_lr=0.0)


def test_chunked_paths_equal_unchunked(tiny_diffusion):
    """``eval_batch_size`` only splits the work: inversions, h trajectories, every edit mode (a
    swap's donors ride with their images) and the metrics come out as from one batch, up to the
    float32 round-off by which a CPU's kernels differ between batch sizes (~1e-5 relative)."""
    from hsep_utils.classifier import SmallCNN
    from hsep_utils.evaluation import domain_metrics
    from hsep_utils.train import InversionCache

    x = _data(6, seed=11)
    keys = [f"k{i}" for i in range(6)]
    whole, chunked = InversionCache(tiny_diffusion, 4, batch_size=64), InversionCache(tiny_diffusion, 4, batch_size=4)
    xT = whole(keys, x)
    torch.testing.assert_close(chunked(keys, x), xT, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(chunked.h_trajectories(keys, x).float(), whole.h_trajectories(keys, x).float(),
                               atol=1e-2, rtol=0)  # float16 storage
    net = MappingNetwork(32, "a", depth=1).eval()
    cls = torch.tensor([False, True] * 3)
    for mode in ("reconstruct", "remove", "swap"):
        donors = dict(donor_xT=xT.flip(0), donor_is_target=~cls) if mode == "swap" else {}
        one = edit(tiny_diffusion, net, xT, cls, 4, mode, alpha=1.5, **donors)
        torch.testing.assert_close(edit(tiny_diffusion, net, xT, cls, 4, mode, alpha=1.5, batch_size=4, **donors), one,
                                   atol=1e-3, rtol=1e-4)
    added, removed = swap_salient(tiny_diffusion, net, xT[:3], xT[3:], 4)
    added2, removed2 = swap_salient(tiny_diffusion, net, xT[:3], xT[3:], 4, batch_size=2)
    torch.testing.assert_close(added2, added, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(removed2, removed, atol=1e-3, rtol=1e-4)
    classifier = SmallCNN().eval()
    rows = [domain_metrics("x", x, x.flip(0), x, classifier, False, batch_size=b) for b in (64, 2)]
    assert rows[0].keys() == rows[1].keys()
    for k in ("mse", "psnr", "sr", "sr_counted"):
        assert rows[0][k] == pytest.approx(rows[1][k], nan_ok=True), k


def test_inversion_cache_keeps_a_bounded_working_set_beside_its_folder(tiny_diffusion, tmp_path, monkeypatch):
    """With a folder, at most ``in_memory`` inversions stay in memory; the rest are read back from
    disk, identical, without inverting again. Without a folder every inversion stays in memory."""
    from hsep_utils.train import InversionCache

    x = _data(5, seed=12)
    keys = [f"k{i}" for i in range(5)]
    bounded = InversionCache(tiny_diffusion, 3, tmp_path / "inv", batch_size=2, in_memory=2)
    first = bounded(keys, x)
    assert len(bounded.mem) == 2 and list(bounded.mem) == keys[-2:]
    monkeypatch.setattr(tiny_diffusion, "invert", lambda *a, **k: pytest.fail("inverted again"))
    assert torch.equal(bounded(keys[::-1], x.flip(0)), first.flip(0)) and len(bounded.mem) == 2
    monkeypatch.undo()
    unbounded = InversionCache(tiny_diffusion, 3, batch_size=2, in_memory=2)
    unbounded(keys, x)
    assert len(unbounded.mem) == 5


def test_a_learned_kl_head_satisfies_the_kl_alone_the_channels_do_not():
    """The frozen-C experiment of issue 26: C of the two classes apart by a shift of 2 along one
    direction, fixed. Training only the learned head drives Eq. 8's KL to ~0; over C's own pooled
    channels (``kl_head: none``) nothing but C can lower it."""
    g = torch.Generator().manual_seed(0)
    direction = torch.randn(8, 1, 1, generator=g)
    c_bg = torch.randn(32, 8, 4, 4, generator=g)
    c_tg = torch.randn(32, 8, 4, 4, generator=g) + 2 * direction / direction.norm()
    net = MappingNetwork(8, "a", depth=1)
    opt = torch.optim.Adam(net.kl_head.parameters(), lr=1e-2)
    start = L.bidirectional_kl(net.kl_logits(c_bg), net.kl_logits(c_tg)).item()
    for _ in range(300):
        opt.zero_grad()
        kl = L.bidirectional_kl(net.kl_logits(c_bg), net.kl_logits(c_tg))
        kl.backward()
        opt.step()
    assert kl.item() < 0.01 and kl.item() < start  # the head alone made the classes alike
    channels = L.bidirectional_kl(c_bg.mean((2, 3)), c_tg.mean((2, 3)))
    assert channels.item() > 0.1  # nothing to train there: only moving C lowers it

    cfg = TrainConfig(kl_head="none")
    net.zero_grad(set_to_none=True)
    h = torch.randn(4, 8, 4, 4, generator=g, requires_grad=True)
    is_target = torch.tensor([False, False, True, True])
    _, terms = T_latent_terms(net, h, 500, is_target, cfg)
    terms["kl"].backward()
    assert net.kl_head.weight.grad is None and h.grad.abs().sum() > 0  # the gradient reaches C, not the head
    with pytest.raises(ValueError, match="kl_head must be one of"):
        TrainConfig(kl_head="pooled")


def test_cosine_image_weighting_follows_the_papers_code(tiny_diffusion):
    """cosine: image terms weigh cos((1 − i/(n − 1))·π/2) at step i of n from the noisiest: none at
    the noisiest step (not computed), 1 at the last; the latent terms keep weight 1."""
    cfg = TrainConfig(image_term_weighting="cosine")
    assert [round(cfg.image_weight(i, 5), 6) for i in range(5)] == \
        [0.0, round(math.cos(0.75 * math.pi / 2), 6), round(math.sqrt(0.5), 6), round(math.cos(0.25 * math.pi / 2), 6), 1.0]
    assert [TrainConfig(image_term_weighting="cosine", image_loss_every=2).image_weight(i, 5) > 0
            for i in range(5)] == [False, False, True, False, True]
    net = MappingNetwork(32, "a", depth=2)
    x, is_t = torch.randn(4, 3, 16, 16), torch.tensor([0, 0, 1, 1], dtype=torch.bool)
    total, terms, _, _ = step_losses(net, tiny_diffusion, x, 500, x, is_t, cfg, image_weight=0.25)
    latent = sum(terms[k] for k in L.LATENT_TERMS)
    image = sum(terms[k] for k in terms if k in L.IMAGE_TERMS)
    assert image.item() > 0
    torch.testing.assert_close(total, latent + 0.25 * image)


def test_background_salient_zero_recombines_backgrounds_with_s_zero():
    net = MappingNetwork(8, "a", depth=2, h_scale=2.0)
    h = torch.randn(4, 8, 4, 4)
    is_target = torch.tensor([False, True, False, True])
    own, _ = T_latent_terms(net, h, 500, is_target, TrainConfig())
    zero, terms = T_latent_terms(net, h, 500, is_target, TrainConfig(background_salient="zero"))
    c, s = net.split(h, 500, is_target)
    torch.testing.assert_close(zero[~is_target], net.combine(c, torch.zeros_like(s))[~is_target])
    torch.testing.assert_close(zero[is_target], own[is_target])  # targets keep their own S
    assert not torch.allclose(zero[~is_target], own[~is_target])
    _, raw = T_latent_terms(net, h, 500, is_target, TrainConfig())
    _, normalised = T_latent_terms(net, h, 500, is_target, TrainConfig(consistency_scale="normalised"))
    torch.testing.assert_close(normalised["consistency"], raw["consistency"] / 4.0)  # h_scale² = 4


def test_numbers_do_not_depend_on_the_inversion_cache_history(tiny_diffusion, tmp_path):
    """A cold inversion cache, one filled beforehand one image at a time in reverse order, and the
    first run's full folder give byte-identical training logs and validations (``val_log.csv``
    without its wall-clock ``minutes``): registered splits invert only in canonical groups."""
    import pandas as pd

    from hsep_utils.classifier import SmallCNN
    from hsep_utils.preset_training import train_preset
    from hsep_utils.splits import Split
    from hsep_utils.train import InversionCache

    x = _data(14, seed=21)
    parts = dict(train_bg=x[:4], train_tg=x[4:8], val_bg=x[8:11], val_tg=x[11:])
    data = {name: Split(pd.DataFrame({"file": [f"{name}/{i}.png" for i in range(len(v))]}), v)
            for name, v in parts.items()}
    cfg = TrainConfig(depth=1, n_steps=4, batch_per_class=2, validate_every=1, max_batches=2, latent_warmup_steps=3,
                      latent_warmup_pool=3, seed=4)
    torch.manual_seed(0)
    classifier = SmallCNN().eval()

    def run(out, inversions):
        train_preset(tiny_diffusion, data, cfg, tmp_path / out, classifier, inversion_dir=tmp_path / inversions,
                     progress=False, eval_batch_size=3)
        val = pd.read_csv(tmp_path / out / "val_log.csv").drop(columns="minutes")
        return (tmp_path / out / "train_log.csv").read_bytes(), val.to_csv(index=False)

    cold = run("cold", "inv-cold")
    other = InversionCache(tiny_diffusion, 4, tmp_path / "inv-other", batch_size=3)
    for split in data.values():
        other.register(split.keys, split.x)
    for split in data.values():
        for i in reversed(range(len(split.keys))):
            other([split.keys[i]], split.x[i:i + 1])
    other.h_trajectories(data["train_tg"].keys[-1:], data["train_tg"].x[-1:])
    assert run("other", "inv-other") == cold
    assert run("warm", "inv-cold") == cold
    assert len(list((tmp_path / "inv-cold").glob("*.n4.g3.pt"))) == 14  # every image, in its group


def _saved_network(diffusion, tmp_path, seed: int):
    """A random mapping network saved as ``tmp_path/mapping/best.pt``, with ``_registered_pairs`` (a cache
    of 2): what the means computed beside a network (donor prior, common shift) are fitted on."""
    from hsep_utils.io import save_torch

    torch.manual_seed(seed)
    net = MappingNetwork(32, "c", depth=1).eval()
    bg, tg, cache = _registered_pairs(diffusion, tmp_path / "inv", batch_size=2)
    checkpoint = tmp_path / "mapping" / "best.pt"
    save_torch({"net": net.state_dict()}, checkpoint)
    return net, bg, tg, cache, checkpoint


def test_donor_prior_pulls_the_swap_toward_the_targets_mean_and_is_tied_to_its_network(tiny_diffusion, tmp_path):
    """donor_specificity γ: S′ = S̄ + γ·(S_donor − S̄). γ = 1 is the paper's swap (the same bytes as no prior), γ = 0
    the same edit whatever the donor; the prior is the mean S of the latent warm-up's pool of training targets,
    written beside the network and refused for another one, and asked for by name when missing."""
    from hsep_utils.donor_prior import DonorPrior, load_donor_prior
    from hsep_utils.io import save_torch
    from hsep_utils.preset_training import fit_donor_prior
    from hsep_utils.train import training_order

    net, bg, tg, cache, checkpoint = _saved_network(tiny_diffusion, tmp_path, seed=6)
    params = {"donor_specificity": 0.0, "latent_warmup_pool": 2, "seed": 0, "ddim_steps": 5, "t_edit": 0,
              "t_edit_max": 600}
    with pytest.raises(FileNotFoundError, match="donor_prior.pt"):
        load_donor_prior(params, checkpoint)
    fit_donor_prior(tiny_diffusion, net, cache, bg, tg, params, checkpoint)
    prior = load_donor_prior(params, checkpoint)
    assert sorted(prior.mean) == sorted(t for t in tiny_diffusion.timesteps(5) if t < 600)  # the edited steps
    pool = training_order(4, 4, 2, 0, 0)[1][:2].tolist()  # the warm-up's first two targets
    h = cache.h_trajectories([tg.keys[i] for i in pool], tg.x[pool]).float()
    t = max(prior.mean)
    k = list(reversed(tiny_diffusion.timesteps(5))).index(t)
    with torch.no_grad():
        s = net.split(h[:, k], t, torch.ones(2, dtype=torch.bool))[1]
    torch.testing.assert_close(prior.mean[t], s.mean(0), atol=1e-5, rtol=0)
    assert load_donor_prior({**params, "donor_specificity": 1.0}, checkpoint) is None

    xT = cache(bg.keys, bg.x)
    is_bg, is_tg = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    swap = lambda donors, p: edit(tiny_diffusion, net, xT[:2], is_bg, 5, "swap", donor_xT=donors,  # noqa: E731
                                  donor_is_target=is_tg, t_edit_max=600, residual=True, donor_prior=p)
    donors_a, donors_b = cache(tg.keys, tg.x)[:2], cache(tg.keys, tg.x)[2:]
    assert torch.equal(swap(donors_a, DonorPrior(1.0, prior.mean)), swap(donors_a, None))
    assert (swap(donors_a, None) - swap(donors_b, None)).abs().max() > 1e-3
    torch.testing.assert_close(swap(donors_a, prior), swap(donors_b, prior), atol=1e-5, rtol=0)  # γ = 0
    with pytest.raises(ValueError, match="donor_specificity"):
        DonorPrior(-0.5, prior.mean)
    save_torch({"net": MappingNetwork(32, "c", depth=1).state_dict()}, checkpoint)  # another network
    with pytest.raises(ValueError, match="another network"):
        load_donor_prior(params, checkpoint)


def test_common_shift_moves_only_a_removals_c_by_the_class_means_and_is_tied_to_its_network(tiny_diffusion, tmp_path):
    """removal_common_shift λ: a removal takes C′ = C + λ·(C̄_bg − C̄_tg), the classes' mean C over the latent
    warm-up's pool at each edited step. λ = 0 is the paper's removal (the same bytes as no shift); swaps and
    reconstructions are untouched; the shift is written beside the network and refused for another one, asked
    for by name when missing, and a λ below 0 is refused."""
    from hsep_utils.common_shift import CommonShift, load_common_shift
    from hsep_utils.io import save_torch
    from hsep_utils.mapping import edited_h
    from hsep_utils.preset_training import fit_common_shift
    from hsep_utils.train import training_order

    net, bg, tg, cache, checkpoint = _saved_network(tiny_diffusion, tmp_path, seed=7)
    params = {"removal_common_shift": 1.0, "latent_warmup_pool": 2, "seed": 0, "ddim_steps": 5, "t_edit": 0,
              "t_edit_max": 600}
    with pytest.raises(FileNotFoundError, match=r"removal_common_shift 1.0 needs .*common_shift\.pt.*notebook 02"):
        load_common_shift(params, checkpoint)
    with pytest.raises(ValueError, match="removal_common_shift must be ≥ 0"):  # before the file is looked for
        load_common_shift({**params, "removal_common_shift": -1.0}, checkpoint)
    fit_common_shift(tiny_diffusion, net, cache, bg, tg, params, checkpoint)
    shift = load_common_shift(params, checkpoint)
    assert sorted(shift.shift) == sorted(t for t in tiny_diffusion.timesteps(5) if t < 600)  # the edited steps
    assert load_common_shift({**params, "removal_common_shift": 0}, checkpoint) is None
    t = max(shift.shift)
    k = list(reversed(tiny_diffusion.timesteps(5))).index(t)
    means = []
    for is_target, split, order in zip((False, True), (bg, tg), training_order(4, 4, 2, 0, 0)):
        pool = order[:2].tolist()  # the warm-up's first two of each class
        h = cache.h_trajectories([split.keys[i] for i in pool], split.x[pool]).float()
        with torch.no_grad():
            means.append(net.split(h[:, k], t, torch.full((2,), is_target))[0].mean(0))
    torch.testing.assert_close(shift.shift[t], means[0] - means[1], atol=1e-5, rtol=0)
    c = torch.randn(2, *shift.shift[t].shape)
    torch.testing.assert_close(CommonShift(2.0, shift.shift).move(c, t), c + 2 * (means[0] - means[1]), atol=1e-5,
                               rtol=0)
    h = cache.h_trajectories(tg.keys[:2], tg.x[:2]).float()[:, k]
    with torch.no_grad():  # the residual edit with C moved: h + f(C′, S′) − f(C, S)
        c, s = net.split(h, t, torch.ones(2, dtype=torch.bool))
        moved = shift.move(c, t)
        torch.testing.assert_close(edited_h(net, h, c, s, 0 * s, True, moved),
                                   h + net.combine(moved, 0 * s) - net.combine(c, s))

    xT_bg, xT_tg = cache(bg.keys, bg.x)[:2], cache(tg.keys, tg.x)[:2]
    is_bg, is_tg = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    run = lambda mode, xT, cls, p, **kw: edit(tiny_diffusion, net, xT, cls, 5, mode, t_edit_max=600,  # noqa: E731
                                              residual=True, common_shift=p, **kw)
    assert torch.equal(run("remove", xT_tg, is_tg, CommonShift(0.0, shift.shift)), run("remove", xT_tg, is_tg, None))
    assert (run("remove", xT_tg, is_tg, shift) - run("remove", xT_tg, is_tg, None)).abs().max() > 1e-3
    assert torch.equal(run("reconstruct", xT_tg, is_tg, shift), run("reconstruct", xT_tg, is_tg, None))
    swap = dict(donor_xT=xT_tg, donor_is_target=is_tg)
    assert torch.equal(run("swap", xT_bg, is_bg, shift, **swap), run("swap", xT_bg, is_bg, None, **swap))
    added, removed = swap_salient(tiny_diffusion, net, xT_bg, xT_tg, 5, t_edit_max=600, residual=True,
                                  common_shift=shift)
    assert torch.equal(removed, run("remove", xT_tg, is_tg, shift))
    assert torch.equal(added, run("swap", xT_bg, is_bg, None, **swap))
    save_torch({"net": MappingNetwork(32, "c", depth=1).state_dict()}, checkpoint)  # another network
    with pytest.raises(ValueError, match="another network"):
        load_common_shift(params, checkpoint)
