"""The two-temperature relaxation of DARP (Colombo & Gao, 2021), as we read it.

Every unit i has a logit theta_i. The forward pass multiplies the unit by a relaxed Bernoulli sample at
the *sampling temperature* tau_s (binary concrete); the complexity penalty uses the keep probability
pi_i = sigmoid(theta_i / tau_p) at the *penalty temperature* tau_p. As both temperatures go to zero the
samples become hard 0/1 gates and pi the indicator of theta_i > 0, i.e. the discrete subset problem.
"""

from __future__ import annotations

import torch

_EPS = 1e-6


def keep_probabilities(theta: torch.Tensor, tau_p: float) -> torch.Tensor:
    return torch.sigmoid(theta / tau_p)


def sample_gates(
    theta: torch.Tensor, tau_s: float, *, hard: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Binary-concrete sample z = sigmoid((theta + log u - log(1-u)) / tau_s), u ~ U(0, 1).

    With `hard`, the forward value is the 0/1 rounding of z and the gradient is that of z
    (straight-through)."""
    u = torch.rand(theta.shape, generator=generator, dtype=theta.dtype).to(theta.device)
    u = u.clamp(_EPS, 1.0 - _EPS)
    z = torch.sigmoid((theta + torch.log(u) - torch.log1p(-u)) / tau_s)
    if hard:
        z = (z > 0.5).to(z.dtype) + (z - z.detach())  # exactly 0/1 forward, gradient of z
    return z
