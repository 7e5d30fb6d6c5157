"""torch.compile against eager for the fast (K-Planes) model: one IGR-style training step (f, grad f with
create_graph, backward) and a no-grad query forward, on random points in the unit cube.

    python benchmarks/compile_speed.py [--threads 2] [--device cpu] [--points 8192]

A compile that fails is printed as such (torch 2.13 refuses double backward through aot_autograd).
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from dsr_backend.config import preset
from dsr_backend.kplanes import KPlanesSDF


def timed(run: Callable[[], None], repeats: int) -> float:
    """Seconds per call after two warm-up calls."""
    run()
    run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=8192, help="training points per step (default 8192)")
    parser.add_argument("--query-points", type=int, default=65536, help="points per query chunk (default 65536)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = preset("fast").model.for_times(40)
    network = KPlanesSDF(config).to(device)
    generator = torch.Generator(device="cpu").manual_seed(0)

    def inputs(count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (torch.rand(count, 3, generator=generator) * 2 - 1).to(device)
        t = (torch.rand(count, generator=generator) * 2 - 1).to(device)
        return x, t, torch.zeros(count, dtype=torch.long, device=device)

    train_x, train_t, train_p = inputs(args.points)
    query_x, query_t, query_p = inputs(args.query_points)
    print(f"fast preset ({config.describe()}), torch {torch.__version__}, {device}, {torch.get_num_threads()} thread(s)")
    print(f"{'variant':>10} {'train step ms':>14} {'query ms':>10}")
    for name, model in (("eager", network), ("compiled", torch.compile(network))):
        def train_step() -> None:
            x = train_x.clone().requires_grad_(True)
            sdf = model(x, train_t, train_p)
            (grad,) = torch.autograd.grad(sdf.sum(), x, create_graph=True)
            (sdf.abs().mean() + (grad.norm(dim=1) - 1).pow(2).mean()).backward()

        def query() -> None:
            with torch.no_grad():
                model(query_x, query_t, query_p)

        cells = []
        for run in (train_step, query):
            try:
                cells.append(f"{timed(run, args.repeats) * 1e3:.1f}")
            except Exception as error:  # report, do not stop: a refused compile is a result
                cells.append(f"failed ({type(error).__name__}: {str(error).splitlines()[0][:70]})")
        print(f"{name:>10} {cells[0]:>14} {cells[1]:>10}")


if __name__ == "__main__":
    main()
