"""Screen (validation only) of a removal that also moves C: h + f(C + λ·ΔC̄_t, (1 − β)·S) − f(C, S), with
ΔC̄_t = C̄_bg,t − C̄_tg,t the difference of the two classes' mean C at step t over the latent warm-up's pool of
training images (their h trajectories are cached). Why: given its counterfactual's exact S, a target's own C still
renders age and gender (docs/experiments.md "what C keeps when removing"), so no S′ removes
them; moving C by the class means is the smallest change that reaches C. Not an option yet: this wraps
``hsep_utils.edit.edit`` for removals and runs ``edit_form`` (α and β chosen again by notebook 02's rule, then
notebook 04's rows on validation; the ``y (β = 1)`` row moves C too).

    LAMBDA=1 FORMS=residual PYTHONPATH=.:benchmarks python benchmarks/common_shift_screen.py OUTDIR toy-age
"""
import os

import torch

import edit_form
import hsep_utils.edit as edit_module
from hsep_utils.diffusion import in_edit_window
from hsep_utils.images import as_images
from hsep_utils.mapping import edited_h
from hsep_utils.train import training_order

LAMBDA = float(os.environ.get("LAMBDA", "1"))
SHIFT: dict[int, torch.Tensor] = {}  # timestep → C̄_bg − C̄_tg, filled before the first search
paper_edit, paper_choose = edit_module.edit, edit_form.choose_salient_strength


def fit_shift(diffusion, net, cache, data, params) -> None:
    n = params["latent_warmup_pool"]
    order = training_order(len(data["train_bg"].keys), len(data["train_tg"].keys), cache.batch_size, params["seed"], 0)
    timesteps = list(reversed(diffusion.timesteps(params["ddim_steps"])))  # the trajectories' order
    edited = [k for k, t in enumerate(timesteps) if in_edit_window(t, params["t_edit"], params.get("t_edit_max"))]
    means = []
    for is_target, split, idx in ((False, data["train_bg"], order[0]), (True, data["train_tg"], order[1])):
        pool, x = idx[:n].tolist(), as_images(split.x)
        keys, sums = [split.keys[i] for i in pool], {timesteps[k]: 0.0 for k in edited}
        for i in range(0, n, cache.batch_size):
            h = cache.h_trajectories(keys[i:i + cache.batch_size], x.take(pool[i:i + cache.batch_size]))
            for k in edited:
                hk = h[:, k].to(torch.float32)
                c, _ = net.split(hk, timesteps[k], torch.full((len(hk),), is_target))
                sums[timesteps[k]] = sums[timesteps[k]] + c.sum(0)
        means.append({t: v / n for t, v in sums.items()})
    SHIFT.update({t: means[0][t] - means[1][t] for t in means[0]})


def edit(diffusion, net, xT, is_target, n_steps, mode="reconstruct", t_edit=0, donor_xT=None, donor_is_target=None,
         alpha=1.0, asymmetric=True, batch_size=None, donor_h=None, t_edit_max=None, residual=False,
         from_window=False, donor_prior=None, edit_mask=0.0):
    if mode != "remove":
        return paper_edit(diffusion, net, xT, is_target, n_steps, mode, t_edit, donor_xT, donor_is_target, alpha,
                          asymmetric, batch_size, donor_h, t_edit_max, residual, from_window, donor_prior, edit_mask)
    if batch_size is not None and len(xT) > batch_size:
        return torch.cat([edit(diffusion, net, xT[i:i + batch_size], is_target[i:i + batch_size], n_steps, mode, t_edit,
                               alpha=alpha, asymmetric=asymmetric, t_edit_max=t_edit_max, residual=residual,
                               from_window=from_window, edit_mask=edit_mask) for i in range(0, len(xT), batch_size)])
    cls = is_target.to(torch.bool)

    @torch.no_grad()
    def edit_fn(h, t):
        c, s = net.split(h, t, cls)
        s_new = (1 - alpha) * s
        moved = net.combine(c + LAMBDA * SHIFT[int(t)].to(c), s_new) - net.combine(c, s_new)
        return edited_h(net, h, c, s, s_new, residual) + moved

    with torch.no_grad():
        return diffusion.generate(xT, n_steps, edit_fn=edit_fn, t_edit=t_edit, asymmetric=asymmetric,
                                  t_edit_max=t_edit_max, start_below=t_edit_max if from_window else None,
                                  edit_mask=edit_mask)


def choose(diffusion, net, cache, data, params, *args, **kwargs):
    if not SHIFT:
        fit_shift(diffusion, net, cache, data, params)
    return paper_choose(diffusion, net, cache, data, params, *args, **kwargs)


if __name__ == "__main__":
    edit_module.edit, edit_form.choose_salient_strength = edit, choose
    edit_form.main()
