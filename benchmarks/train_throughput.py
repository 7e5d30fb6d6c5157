"""Training throughput of the paper preset: ours against a plain autograd reference, in one run.

Prints surface points per second for each variant (fp32, TF32 on CUDA, bf16; eager and torch.compile), the
achieved FLOP/s (about 12 x parameters FLOPs per evaluated point: forward, input gradient, backward through
both) against the matrix-multiply FLOP/s of that arithmetic measured in the same run, and the speed-up over
the reference.

    python benchmarks/train_throughput.py --batch 4096 --threads 1
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from dsr_backend import preset
from dsr_backend.loss import igr_loss
from dsr_backend.mlp import SpaceTimeSDF, reference_sdf_and_gradient
from dsr_backend.sampling import SeriesSampler
from dsr_backend.synthetic import MovingSphere
from dsr_backend.train import cuda_matmul_precision


def matmul_flops(width: int, rows: int, dtype: torch.dtype, device: torch.device, repeats: int = 10) -> float:
    """FLOP/s of a (rows, width) x (width, width) product, the shape that dominates a training step."""
    a = torch.randn(rows, width, device=device, dtype=dtype)
    b = torch.randn(width, width, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2.0 * rows * width * width * repeats / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(model: SpaceTimeSDF, sampler: SeriesSampler, steps: int, precision: str, gradient_fn,
               device: torch.device, compiled: bool = False) -> float:
    """Seconds per optimiser step (after two warm-up steps, which also compile)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator(device=device).manual_seed(0)
    batches = [sampler.sample(generator) for _ in range(steps + 2)]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=precision == "bf16" and gradient_fn is not None)

    def loss_and_backward(batch):
        with autocast:
            loss, _ = igr_loss(model, batch, gradient_fn=gradient_fn, dtype=dtype)
        loss.backward()

    run = torch.compile(loss_and_backward) if compiled else loss_and_backward
    start = None
    with cuda_matmul_precision(device, precision):
        for index, batch in enumerate(batches):
            if index == 2:
                synchronize(device)
                start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            run(batch)
            optimizer.step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096, help="surface points per step (paper: 16384)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variants")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = preset("paper", batch_size=args.batch)
    series = MovingSphere().series(np.arange(1, 10), points_per_frame=20000)
    sampler = SeriesSampler(series, args.batch, 0, config.knn, config.global_fraction, device)
    torch.manual_seed(0)
    model = SpaceTimeSDF(config.model).to(device)
    params = sum(p.numel() for p in model.parameters() if p is not model.latents.weight)
    evaluated = args.batch * 2 + sampler.num_global
    flops_per_step = 12.0 * params * evaluated
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch} surface points "
          f"({evaluated} evaluated), {params / 1e6:.2f} M parameters, {flops_per_step / 1e9:.0f} GFLOP per step")
    peaks = {name: matmul_flops(config.model.hidden, evaluated, dtype, device)
             for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    if device.type == "cuda":
        with cuda_matmul_precision(device, "tf32"):
            peaks["tf32"] = matmul_flops(config.model.hidden, evaluated, torch.float32, device)
    for name, value in peaks.items():
        print(f"matmul {name}: {value / 1e9:.1f} GFLOP/s")
    variants = [("reference fp32 (Linear+Softplus, autograd.grad)", "fp32", reference_sdf_and_gradient, False),
                ("reference bf16 (the same under autocast)", "bf16", reference_sdf_and_gradient, False),
                ("ours fp32 (fused f + grad f node)", "fp32", None, False),
                ("ours tf32", "tf32", None, False),
                ("ours bf16", "bf16", None, False),
                ("ours fp32, torch.compile", "fp32", None, True),
                ("ours tf32, torch.compile", "tf32", None, True),
                ("ours bf16, torch.compile", "bf16", None, True)]
    # TF32 is a CUDA arithmetic: on a CPU it would repeat fp32.
    variants = [(name, precision, gradient_fn, compiled) for name, precision, gradient_fn, compiled in variants
                if (device.type == "cuda" or precision != "tf32") and not (compiled and args.no_compile)]
    reference_seconds = None
    for name, precision, gradient_fn, compiled in variants:
        seconds = time_steps(model, sampler, args.steps, precision, gradient_fn, device, compiled)
        reference_seconds = reference_seconds or seconds
        achieved = flops_per_step / seconds
        print(f"{name:50s} {seconds:7.3f} s/step  {args.batch / seconds:9.0f} points/s  "
              f"{achieved / 1e9:6.1f} GFLOP/s = {achieved / peaks[precision]:.0%} of matmul {precision}  "
              f"speed-up {reference_seconds / seconds:.2f}x", flush=True)


if __name__ == "__main__":
    main()
