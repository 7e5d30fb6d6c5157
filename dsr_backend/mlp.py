"""The DSR space-time SDF network f(x, t, z) (paper section 3.2; IGR architecture)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .fused import COORDS, FusedSDFGradient, LayerLayout
from .sdf import SDFWithGradient


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the space-time SDF MLP.

    Parameters
    ----------
    hidden : width of every hidden layer.
    layers : number of hidden layers.
    skip_layer : index of the layer that receives the input again (concatenated, scaled by 1/sqrt 2).
    latent_dim : size of the latent code of each protein (the paper's z).
    beta : softplus sharpness.
    init_radius : radius of the sphere that is the zero set at initialisation (unit frame).
    num_proteins : number of latent codes.
    """

    hidden: int = 512
    layers: int = 8
    skip_layer: int = 4
    latent_dim: int = 192
    beta: float = 100.0
    init_radius: float = 1.0
    num_proteins: int = 1

    def describe(self) -> str:
        """The architecture in a few words."""
        return f"{self.layers} x {self.hidden} MLP, latent {self.latent_dim}, softplus beta {self.beta:g}"


class SpaceTimeSDF(nn.Module):
    """MLP f(x, t, z_p) -> signed distance, with IGR geometric initialisation.

    The input is (x, y, z, t) in the unit frame / model time, followed by the latent code of protein p.
    ``forward`` is the plain formulation (concatenate, Linear, Softplus); ``sdf_and_gradient`` computes
    the same function and its input gradient in one fused autograd node for training and queries.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not 0 < config.skip_layer < config.layers:
            raise ValueError(f"skip_layer must lie in 1..{config.layers - 1}, got {config.skip_layer}")
        self.config = config
        d_in = COORDS + config.latent_dim
        self.input_dim = d_in
        self.latents = nn.Embedding(config.num_proteins, config.latent_dim)
        linears = []
        for index in range(config.layers + 1):
            in_dim = d_in if index == 0 else config.hidden
            out_dim = 1 if index == config.layers else config.hidden
            if index + 1 == config.skip_layer:
                out_dim = config.hidden - d_in
            if out_dim <= 0:
                raise ValueError(f"hidden={config.hidden} is too small for an input of {d_in} at the skip")
            linears.append(nn.Linear(in_dim, out_dim))
        self.linears = nn.ModuleList(linears)
        self._layout = LayerLayout([linear.in_features for linear in linears[:-1]], d_in, config.skip_layer)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Geometric initialisation: f starts as |x| - init_radius, independent of t and z."""
        cfg = self.config
        nn.init.normal_(self.latents.weight, 0.0, 1.0)
        with torch.no_grad():
            for index, linear in enumerate(self.linears):
                if index == cfg.layers:
                    nn.init.normal_(linear.weight, math.sqrt(math.pi) / math.sqrt(linear.in_features), 1e-5)
                    nn.init.constant_(linear.bias, -cfg.init_radius)
                    continue
                nn.init.normal_(linear.weight, 0.0, math.sqrt(2.0) / math.sqrt(linear.out_features))
                nn.init.zeros_(linear.bias)
                if index == 0:
                    linear.weight[:, 3:].zero_()
                elif index == cfg.skip_layer:
                    skip_start = linear.in_features - self.input_dim
                    linear.weight[:, skip_start + 3:].zero_()

    # ------------------------------------------------------------------ plain formulation
    def forward(self, x: torch.Tensor, t: torch.Tensor, protein: torch.Tensor) -> torch.Tensor:
        """Signed distance at unit-frame points ``x`` (B, 3), model times ``t`` (B,), protein ids (B,)."""
        inputs = torch.cat([x, t.reshape(-1, 1), self.latents(protein)], dim=1)
        h = inputs
        for index, linear in enumerate(self.linears):
            if index == self.config.skip_layer:
                h = torch.cat([h, inputs], dim=1) / math.sqrt(2.0)
            h = linear(h)
            if index < self.config.layers:
                h = F.softplus(h, beta=self.config.beta)
        return h.squeeze(1)

    # ------------------------------------------------------------------ fast formulation
    def sdf_and_gradient(self, x: torch.Tensor, t: torch.Tensor, protein: torch.Tensor,
                         with_time: bool = False, dtype: torch.dtype = torch.float32) -> SDFWithGradient:
        """f and its gradient in x (and in t when ``with_time``) at ``x`` (B, 3), ``t`` (B,), ``protein`` (B,).

        Differentiable in the parameters and latent codes (not in ``x`` or ``t``), as
        ``autograd.grad(create_graph=True)`` would be, through one fused autograd node
        (:mod:`dsr_backend.fused`). ``dtype=torch.bfloat16`` runs the matrix products and elementwise
        work in bfloat16 (float32 accumulation); results and parameter gradients are float32.
        """
        coords = torch.cat([x.detach(), t.detach().reshape(-1, 1)], dim=1)
        params = [p for linear in self.linears for p in (linear.weight, linear.bias)]
        with torch.autocast(device_type=x.device.type, enabled=False):
            sdf, grad = FusedSDFGradient.apply(coords, protein, self._layout, self.config.beta, dtype,
                                               self.latents.weight, *params)
        return SDFWithGradient(sdf, grad[:, :3], grad[:, 3] if with_time else None)


def reference_sdf_and_gradient(model: SpaceTimeSDF, x: torch.Tensor, t: torch.Tensor,
                               protein: torch.Tensor) -> SDFWithGradient:
    """The plain way: ``model.forward`` then ``autograd.grad(create_graph=True)`` (for tests and benchmarks)."""
    x = x.detach().requires_grad_(True)
    sdf = model(x, t, protein)
    (grad_x,) = torch.autograd.grad(sdf.sum(), x, create_graph=True)
    return SDFWithGradient(sdf, grad_x, None)
