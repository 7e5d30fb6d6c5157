"""f and grad_x f of the DSR MLP in one autograd node with a hand-written backward.

Training needs the parameter gradient of a loss on both f and its input gradient (double backprop).
Autograd does this through the graph of its own backward pass, keeping and revisiting many elementwise
intermediates. Here the forward pass, the reverse pass for grad f, and the adjoint of both are written
out: six matrix products per layer (the minimum) and a handful of elementwise passes.

Notation for hidden layer l (0 .. L-1), with c_l = 1/sqrt(2) at the skip layer and 1 elsewhere::

    a_l = c_l (h_{l-1} Wh_l^T + C Wc_l^T + Z_l[p]) + b_l      (C = (x, y, z, t); the input part only
    h_l = softplus_beta(a_l),  s_l = sigmoid(beta a_l)          in layer 0 and the skip layer)
    f   = h_{L-1} w^T + b
    g_{L-1} = w,  q_l = g_l * s_l,  g_{l-1} = c_l q_l Wh_l,  G = sum_input-layers c_l q_l Wc_l

Z_l = latents Wz_l^T is computed once per protein.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

COORDS = 4


class LayerLayout:
    """Where the hidden, coordinate and latent columns of each hidden layer's weight lie."""

    def __init__(self, in_features: list[int], input_dim: int, skip_layer: int):
        self.scale = [1.0 / math.sqrt(2.0) if i == skip_layer else 1.0 for i in range(len(in_features))]
        self.hidden_in = [0 if i == 0 else (n - input_dim if i == skip_layer else n)
                          for i, n in enumerate(in_features)]
        self.has_input = [i == 0 or i == skip_layer for i in range(len(in_features))]


def _split(weight: torch.Tensor, hidden_in: int, has_input: bool):
    hidden = weight[:, :hidden_in]
    if not has_input:
        return hidden, None, None
    return hidden, weight[:, hidden_in:hidden_in + COORDS], weight[:, hidden_in + COORDS:]


class FusedSDFGradient(torch.autograd.Function):
    """Returns ``(f, G)`` with ``G = d f / d (x, y, z, t)``; differentiable in the latents and parameters."""

    @staticmethod
    def forward(ctx, coords, protein, layout, beta, dtype, latents, *params):
        weights = [w.to(dtype) for w in params[0::2]]
        biases = [b.to(dtype) for b in params[1::2]]
        coords_c, latents_c = coords.to(dtype), latents.to(dtype)
        hidden_count = len(weights) - 1
        hs, ss, zs = [], [], []
        h = None
        for layer in range(hidden_count):
            wh, wc, wz = _split(weights[layer], layout.hidden_in[layer], layout.has_input[layer])
            pre = None if h is None else h @ wh.t()
            if wc is not None:
                per_protein = latents_c @ wz.t()
                zs.append(per_protein)
                direct = torch.addmm(per_protein[protein], coords_c, wc.t())
                pre = direct if pre is None else pre + direct
            if layout.scale[layer] != 1.0:
                pre = pre * layout.scale[layer]
            pre = pre + biases[layer]
            h = F.softplus(pre, beta=beta)
            ss.append(torch.sigmoid(pre * beta))
            hs.append(h)
        w_out = weights[-1]
        f = (h @ w_out.t()).squeeze(1) + biases[-1]

        gs = [None] * hidden_count
        g = w_out.expand(len(coords), -1)
        grad = None
        for layer in range(hidden_count - 1, -1, -1):
            gs[layer] = g
            q = g * ss[layer]
            if layout.scale[layer] != 1.0:
                q = q * layout.scale[layer]
            wh, wc, _ = _split(weights[layer], layout.hidden_in[layer], layout.has_input[layer])
            if wc is not None:
                grad = q @ wc if grad is None else torch.addmm(grad, q, wc)
            if layer > 0:
                g = q @ wh
        ctx.layout, ctx.beta, ctx.dtype, ctx.hidden_count = layout, beta, dtype, hidden_count
        ctx.save_for_backward(coords_c, protein, latents_c, *weights, *hs, *ss, *gs[:-1])
        return f.float(), grad.float()

    @staticmethod
    def backward(ctx, d_f, d_grad):
        layout, beta, dtype, n = ctx.layout, ctx.beta, ctx.dtype, ctx.hidden_count
        saved = ctx.saved_tensors
        coords, protein, latents = saved[:3]
        weights = saved[3:4 + n]
        hs, ss = saved[4 + n:4 + 2 * n], saved[4 + 2 * n:4 + 3 * n]
        w_out = weights[-1]
        gs = list(saved[4 + 3 * n:]) + [w_out.expand(len(coords), -1)]
        d_f = d_f.to(dtype)
        d_grad = d_grad.to(dtype)
        # Column blocks (hidden, coordinates, latent) of each hidden weight's gradient, summed in float32 and
        # joined at the end: no in-place writes into views, which torch.compile got wrong on CUDA.
        blocks = [[None, None, None] for _ in range(n)]

        def product(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
            return (left.t() @ right).float()

        def add(block: list, index: int, value: torch.Tensor) -> None:
            block[index] = value if block[index] is None else block[index] + value

        # Adjoint of the reverse chain, in forward order: d g_{l-1} feeds d q_l.
        d_a = [None] * n
        d_g = None
        for layer in range(n):
            c, start = layout.scale[layer], layout.hidden_in[layer]
            wh, wc, _ = _split(weights[layer], start, layout.has_input[layer])
            q = gs[layer] * ss[layer] * c
            d_q = None
            if layer > 0:
                d_q = d_g @ wh.t()
                add(blocks[layer], 0, product(q, d_g))
            if wc is not None:
                direct = d_grad @ wc.t()
                d_q = direct if d_q is None else d_q + direct
                add(blocks[layer], 1, product(q, d_grad))
            if c != 1.0:
                d_q = d_q * c
            s = ss[layer]
            d_g = d_q * s
            d_a[layer] = d_q * gs[layer] * (s * (1 - s) * beta)
        d_w_out = d_g.sum(0, keepdim=True).float() + product(d_f[:, None], hs[-1])

        # Adjoint of the forward chain, in backward order.
        d_h = d_f[:, None] * w_out
        d_biases = [None] * n + [d_f.float().sum().reshape(1)]
        d_latents = None
        for layer in range(n - 1, -1, -1):
            c, start = layout.scale[layer], layout.hidden_in[layer]
            d_pre = d_h * ss[layer] + d_a[layer]
            d_biases[layer] = d_pre.float().sum(0)
            if c != 1.0:
                d_pre = d_pre * c
            wh, wc, wz = _split(weights[layer], start, layout.has_input[layer])
            if layer > 0:
                add(blocks[layer], 0, product(d_pre, hs[layer - 1]))
                d_h = d_pre @ wh
            if wc is not None:
                add(blocks[layer], 1, product(d_pre, coords))
                d_per_protein = d_pre.new_zeros(len(latents), d_pre.shape[1]).index_add(0, protein, d_pre)
                add(blocks[layer], 2, product(d_per_protein, latents))
                from_layer = (d_per_protein @ wz).float()
                d_latents = from_layer if d_latents is None else d_latents + from_layer
        d_weights = [torch.cat([part for part in block if part is not None], dim=1) for block in blocks] + [d_w_out]
        grads = []
        for d_w, d_b in zip(d_weights, d_biases):
            grads += [d_w, d_b]
        return (None, None, None, None, None, d_latents, *grads)
