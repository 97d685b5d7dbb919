"""Time of the per-layer parameter and FLOP counts (`hpc_fedprune.models.cost`).

    .venv/bin/python benchmarks/model_cost.py [--models alexnet_cifar ...] [--quick]

One JSON line per (model, mask density): the one-off build (a forward pass of a zero
sample), and the per-round count under a uniformly random mask (new mask object, so no
cached result), the median of ``--repeat`` calls, on the CPU with one thread. Random masks
at low density leave whole columns of small layers empty, so the propagation of removed
units does real work: the worst case for a round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from hpc_fedprune.models import FlatModel, build_model
from hpc_fedprune.models.cost import model_cost

SETTINGS = {
    "mlp": ((1, 28, 28), 10, {}),
    "lenet5": ((1, 28, 28), 10, {}),
    "cnn": ((3, 32, 32), 10, {}),
    "small_cnn": ((3, 32, 32), 10, {}),
    "alexnet_cifar": ((3, 32, 32), 10, {}),
    "resnet18_cifar": ((3, 32, 32), 100, {}),
    "vgg11": ((3, 32, 32), 10, {}),
    "cnn3d": ((1, 91, 109, 91), 0, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--density", type=float, nargs="+", default=[1.0, 0.5, 0.1, 0.01])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="mlp and lenet5, 2 repeats")
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = ["mlp", "lenet5"] if args.quick else args.models
    repeat = 2 if args.quick else args.repeat
    for name in models:
        shape, outputs, options = SETTINGS[name]
        net = FlatModel(build_model(name, shape, outputs, seed=0, **options))
        start = time.perf_counter()
        cost = model_cost(net, shape)
        build_s = time.perf_counter() - start
        for density in args.density:
            gen = torch.Generator().manual_seed(0)
            times, flops = [], 0
            for _ in range(repeat):
                mask = torch.rand(net.numel, generator=gen) < density
                start = time.perf_counter()
                _, per_layer = cost.effective(mask)
                times.append(time.perf_counter() - start)
                flops = int(per_layer.sum())
            print(
                json.dumps(
                    {
                        "bench": "model_cost",
                        "model": name,
                        "input": list(shape),
                        "numel": net.numel,
                        "layers": len(cost.layers),
                        "propagates": cost.links is not None,
                        "build_s": round(build_s, 4),
                        "density": density,
                        "effective_s_median": round(statistics.median(times), 5),
                        "flops_dense": cost.flops_dense,
                        "flops_effective": flops,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
