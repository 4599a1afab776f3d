"""Jet observables computed from model inputs on the training device (for in-batch penalties such as DisCo)."""

from __future__ import annotations

import torch

from jbot_edge.data.preprocessing import InputSpec
from jbot_edge.errors import JbotEdgeError


def jet_mass_from_inputs(x: torch.Tensor, mask: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Invariant mass ``[B]`` of the (massless) constituents in the inputs.

    ``m² = Σ_ij pT_i pT_j (cosh Δη_ij − cos Δφ_ij)`` with (Δη, Δφ) relative to the axis (differences are what
    matter). With ``part_pt`` in the inputs the mass is in GeV; with only ``part_pt_rel`` it is m / pT_jet — the
    natural variable for DisCo in a fixed-pT sample. Only the ``spec.n_particles`` leading constituents count.
    """
    names = spec.features
    if "part_deta" not in names or "part_dphi" not in names:
        raise JbotEdgeError(f"jet mass from inputs needs part_deta and part_dphi in the input features, got {names}")
    pt_name = "part_pt" if "part_pt" in names else "part_pt_rel" if "part_pt_rel" in names else None
    if pt_name is None:
        raise JbotEdgeError(f"jet mass from inputs needs part_pt or part_pt_rel in the input features, got {names}")
    m = mask.bool()
    pt = torch.where(m, x[..., names.index(pt_name)], torch.zeros_like(x[..., 0])).double()
    eta, phi = x[..., names.index("part_deta")].double(), x[..., names.index("part_dphi")].double()
    kernel = torch.cosh(eta[:, :, None] - eta[:, None, :]) - torch.cos(phi[:, :, None] - phi[:, None, :])
    m2 = torch.einsum("bi,bj,bij->b", pt, pt, kernel)
    return m2.clamp(min=0).sqrt().to(x.dtype)
