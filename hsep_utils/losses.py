"""The paper's eight loss terms (Eq. 5–13). Latent terms act on h-space codes; image terms on each
step's predicted x0 against the real image. Every term is a mean, so λ = 1 weights are comparable
across image sizes."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LOSS_TERMS = ("silence", "consistency", "kl", "orthogonal", "classification", "id", "pixel", "lpips")
LATENT_TERMS, IMAGE_TERMS = LOSS_TERMS[:5], LOSS_TERMS[5:]


def silence(s_bg: torch.Tensor) -> torch.Tensor:
    """‖S_bg‖²: background images carry no salient factors (Eq. 6)."""
    return s_bg.pow(2).mean()


def consistency(h_tilde: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """‖f(C, S) − h‖²: the recombined features reproduce the original ones (Eq. 7)."""
    return (h_tilde - h).pow(2).mean()


def bidirectional_kl(logits_bg: torch.Tensor, logits_t: torch.Tensor, temperature: float = 1.0,
                     batch_mean: Callable[[torch.Tensor], torch.Tensor] = lambda p: p.mean(0),
                     pairing: str = "batch") -> torch.Tensor:
    """KL(P‖Q) + KL(Q‖P) between the batch-mean softmax distributions of the pooled Common logits
    of the two classes: Common factors follow one distribution whatever the class (Eq. 8).
    ``batch_mean``: how the batch mean is taken (across processes under data parallelism).
    ``pairing`` pair: the KL of each background/target pair (row i with row i), averaged — the
    paper's code; it asks every pair to look alike, not only the two classes on average."""
    p, q = F.softmax(logits_bg / temperature, dim=1), F.softmax(logits_t / temperature, dim=1)
    if pairing == "pair":
        p, q = p.clamp_min(1e-8), q.clamp_min(1e-8)
        return ((p * (p / q).log()).sum(1) + (q * (q / p).log()).sum(1)).mean()
    p, q = batch_mean(p).clamp_min(1e-8), batch_mean(q).clamp_min(1e-8)
    return (p * (p / q).log()).sum() + (q * (q / p).log()).sum()


def orthogonal(c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """(cᵀs̄)², per spatial position, on channel-normalised codes (Eq. 9); zero vectors stay zero."""
    cn, sn = F.normalize(c, dim=1, eps=1e-8), F.normalize(s, dim=1, eps=1e-8)
    return (cn * sn).sum(1).pow(2).mean()


def classification(logit_c_bg, logit_s_bg, logit_c_t, logit_s_t, form: str = "mean") -> torch.Tensor:
    """BCE with one shared head: C_bg → 0, S_bg → 0, C_t → 0, S_t → 1 (Eq. 10). ``form``
    halves_pos_weight_2: ½(BCE C_bg + BCE S_bg) + ½(BCE C_t + BCE S_t with ``pos_weight`` 2), as
    the paper's code: twice the weight of ``mean`` and S_t → 1 counted double."""
    if form == "halves_pos_weight_2":
        def bce(logit, label, **kw):
            return F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, label), **kw)
        two = torch.tensor(2.0, device=logit_s_t.device, dtype=logit_s_t.dtype)
        return 0.5 * (bce(logit_c_bg, 0.0) + bce(logit_s_bg, 0.0)) + 0.5 * (
            bce(logit_c_t, 0.0) + bce(logit_s_t, 1.0, pos_weight=two))
    logits = torch.cat([logit_c_bg, logit_s_bg, logit_c_t, logit_s_t])
    labels = torch.cat([torch.zeros(len(logit_c_bg) + len(logit_s_bg) + len(logit_c_t)), torch.ones(len(logit_s_t))])
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits))


def identity(embed: Callable[[torch.Tensor], torch.Tensor], x_rec: torch.Tensor, x_real: torch.Tensor,
             real_embedding: torch.Tensor | None = None) -> torch.Tensor:
    """1 − cos(f_id(x̂0), f_id(x)) with a pluggable identity encoder (Eq. 11). ``real_embedding``:
    f_id(x) computed once per batch, since the real image does not change along the trajectory."""
    target = embed(x_real) if real_embedding is None else real_embedding
    return (1 - F.cosine_similarity(embed(x_rec), target, dim=1)).mean()


def pixel(x_rec: torch.Tensor, x_real: torch.Tensor) -> torch.Tensor:
    """Pixel MSE (Eq. 12)."""
    return (x_rec - x_real).pow(2).mean()


def lpips_features(model, x: torch.Tensor) -> list[torch.Tensor]:
    """The channel-normalised backbone features LPIPS compares (``lpips.LPIPS``, version 0.1)."""
    import lpips

    return [lpips.normalize_tensor(f) for f in model.net.forward(model.scaling_layer(x))]


def lpips_loss(model, x_rec: torch.Tensor, x_real: torch.Tensor,
               real_features: list[torch.Tensor] | None = None) -> torch.Tensor:
    """LPIPS (Eq. 13), inputs in [-1, 1]: ``model(x_rec, x_real).mean()``. ``real_features``:
    ``lpips_features(model, x_real)`` computed once per batch, since the real image does not change
    along the trajectory (the backbone then runs on x_rec only)."""
    if real_features is None:
        return model(x_rec, x_real).mean()
    per_layer = [lin((f - g) ** 2).mean((2, 3), keepdim=True)
                 for lin, f, g in zip(model.lins, lpips_features(model, x_rec), real_features)]
    return torch.stack(per_layer).sum(0).mean()
