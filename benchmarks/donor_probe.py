"""Where is a donor's salient sub-factor lost: in S, in C, or in the fusion? On a trained toy preset's
validation split (it chooses nothing, so it never reads the test split).

    python benchmarks/donor_probe.py PRESET [RESULTS_ROOT]     # SKIP_PROBE=1: only part 2

1. A linear probe (multinomial logistic regression, L2) of the target's sub-factor (e.g. gender's
   beard style) from flattened h, C, S and pooled S at three steps of the edit window: fitted on the
   first 128 training targets, scored on the validation targets (chance 1/3).
2. Donor match of adding at α = 1 and the preset's α, in its edit form, with (a) the donor's S (the
   paper's swap) and (b) the S of the input's own counterfactual with the donor's sub-factor (a perfect
   S for that identity): (b) below the oracle h-swap's donor match means the fusion does not render
   what S is given. With each, the confusion of the donor's sub-factor value (rows, in the order of
   the sub-factor's values) against the value of the counterfactual the edit is nearest (columns):
   mass in one column is a network (or base model) that draws one value whatever the donor; mass
   spread off the diagonal, one that draws some value, not the donor's.
"""
import os
import sys

import torch

from hsep_utils.datasets import toy_counterfactual_set, toy_donor_counterfactuals
from hsep_utils.diffusion import load_diffusion
from hsep_utils.edit import edit
from hsep_utils.evaluation import donor_transfer, nearest_counterfactual, toy_regions
from hsep_utils.parameters import is_asymmetric, is_residual
from hsep_utils.presets import repo_path, resolve, results_dir
from hsep_utils.splits import inversion_cache, load_preset_data
from hsep_utils.strength import salient_strength
from hsep_utils.toy import SHOWN_ONLY_WITH, ToyFactors
from hsep_utils.train import load_mapping

torch.manual_seed(0)
preset = sys.argv[1]
params = resolve(preset, {"results_root": sys.argv[2]} if len(sys.argv) > 2 else None)
diffusion = load_diffusion(repo_path(params["base_model"]), "cpu")
data = load_preset_data(params, diffusion.sample_size, params["n_val_per_class"])
net = load_mapping(results_dir(params) / "mapping" / "best.pt", "cpu")
cache = inversion_cache(diffusion, params, data)
attr = params["attribute"]
sub = next(iter(SHOWN_ONLY_WITH[attr]))
steps = params["ddim_steps"]
seq = list(reversed(diffusion.timesteps(steps)))


def probe(train_f, train_y, test_f, test_y, wd=1e-2):
    mu, sd = train_f.mean(0), train_f.std(0) + 1e-4
    a, b = (train_f - mu) / sd, (test_f - mu) / sd
    lin = torch.nn.Linear(a.shape[1], 3)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(a), train_y) + wd * lin.weight.pow(2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        return (lin(b).argmax(1) == test_y).float().mean().item()


def sub_factor_value(images: torch.Tensor, cf_set: torch.Tensor, rows) -> list[int]:
    """Per image, the sub-factor value of the counterfactual in ``cf_set`` (K, N, ...) it equals (the set's
    order is per image: its own hidden value first, ``ToyFactors.counterfactuals``)."""
    index = torch.stack([(cf_set[i] == images).flatten(1).all(1) for i in range(len(cf_set))]).float().argmax(0)
    return [getattr(ToyFactors.from_mapping(r).counterfactuals(attr)[i], sub) for (_, r), i in zip(rows.iterrows(),
                                                                                                   index.tolist())]


n_pool = 128
tr, va = data["train_tg"], data["val_tg"]
h_tr = cache.h_trajectories(tr.keys[:n_pool], tr.x[:n_pool]).float()
h_va = cache.h_trajectories(va.keys, va.x).float()
y_tr = torch.tensor(tr.rows[sub].values[:n_pool])
y_va = torch.tensor(va.rows[sub].values)
print(preset, "sub-factor", sub, "train counts", torch.bincount(y_tr).tolist())
with torch.no_grad():
    for k in (() if os.environ.get('SKIP_PROBE') else (22, 30, 40)):
        t = seq[k]
        out = {}
        for name, h in (("tr", h_tr[:, k]), ("va", h_va[:, k])):
            c, s = net.split(h, t, torch.ones(len(h), dtype=torch.bool))
            out[name] = dict(h=h.flatten(1), C=c.flatten(1), S=s.flatten(1), Spool=s.mean((2, 3)))
        with torch.enable_grad():
            accs = {f: round(probe(out["tr"][f], y_tr, out["va"][f], y_va), 3) for f in ("h", "C", "S", "Spool")}
        print(f"step {k} t={t}: probe accuracy of {sub} (chance 0.33):", accs, flush=True)

alpha = salient_strength(params, "add")
window = dict(t_edit=params["t_edit"], t_edit_max=params.get("t_edit_max"), asymmetric=is_asymmetric(params),
              residual=is_residual(params))
bg, tg = data["val_bg"], data["val_tg"]
n = min(len(bg.rows), len(tg.rows))
x = bg.x[:n].load()
cf_set = toy_counterfactual_set(bg.rows.head(n), attr, x.shape[-1])
donor_cf = toy_donor_counterfactuals(bg.rows.head(n), tg.rows.head(n), attr, x.shape[-1])
regions = toy_regions(bg.rows.head(n), attr, x.shape[-1])
xT = cache(bg.keys[:n], bg.x[:n])
own, other = torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
with torch.no_grad():
    sources = {"donor's S": dict(donor_h=cache.h_trajectories(tg.keys[:n], tg.x[:n])),
               f"S of x's counterfactual with the donor's {sub}": dict(donor_xT=diffusion.invert(donor_cf, steps))}
    for source, donor in sources.items():
        for a in sorted({1.0, alpha}):
            e = edit(diffusion, net, xT, own, steps, "swap", donor_is_target=other, alpha=a, **donor, **window)
            m, s = donor_transfer(e, x, cf_set, donor_cf, regions)
            print(f"alpha {a}: {source} -> donor match {m.float().mean():.3f}, donor oracle {s.float().mean():.3f}",
                  flush=True)
            confusion = torch.zeros(len(cf_set), len(cf_set), dtype=torch.long)
            for want, got in zip(sub_factor_value(donor_cf, cf_set, bg.rows.head(n)),
                                 sub_factor_value(nearest_counterfactual(e, cf_set), cf_set, bg.rows.head(n))):
                confusion[want, got] += 1
            print("  donor's value (rows) against the nearest counterfactual's (columns):", confusion.tolist(), flush=True)
