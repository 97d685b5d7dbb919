"""Client updates per CPU second of grouped training, in one process, against the bare loop.

    .venv/bin/python benchmarks/grouped.py                    # 3 repeats, cohort 128
    .venv/bin/python benchmarks/grouped.py --quick            # smoke run

Workload: benchmarks/throughput.py's (pfl-research's CIFAR-10 setting): 3x32x32 inputs,
50 samples per client, batch 10, 1 epoch (5 steps), SGD lr 0.1, the small CNN. Variants,
each training the same ``--cohort`` clients from the same start weights:

- ``bare``: plain PyTorch, one ``nn.Sequential`` reused, one client after another;
- ``local``: the simulator's `LocalTrainer` (``training.group_size: 1``);
- ``stacked G``: `GroupTrainer` on groups of G, one grouped kernel per layer (the default
  batched path for this network), then each client's weights loaded into the model as the
  round loop does;
- ``vmap G``: the same with ``torch.func.vmap`` over ``functional_call`` instead.

Variants run in rotating order within each repeat, so that load drifts hit them alike;
CPU time (``time.process_time``) and wall time are both reported, one JSON line each, then
``*_summary`` lines with medians over repeats and ``cpu_ratio_vs_bare``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpc_fedprune.algorithms import ClientPlan  # noqa: E402
from hpc_fedprune.config import load_config  # noqa: E402
from hpc_fedprune.models import FlatModel, build_model  # noqa: E402
from hpc_fedprune.training.grouped import GroupTrainer  # noqa: E402
from hpc_fedprune.training.local import LocalTrainer  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=int, default=128, help="clients per measurement")
    parser.add_argument("--samples", type=int, default=50, help="samples per client")
    parser.add_argument("--groups", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--vmap-groups", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="8 clients, groups 2 and 4")
    args = parser.parse_args(argv)
    if args.quick:
        args.cohort, args.groups, args.vmap_groups, args.repeats = 8, [2, 4], [4], 1
    torch.set_num_threads(1)
    config = load_config(None, ["training.batch_size=10", "training.local_epochs=1"])
    net = FlatModel(build_model("small_cnn", (3, 32, 32), 10, seed=0))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.cohort * args.samples, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (len(x),), generator=gen)
    parts = [np.arange(c * args.samples, (c + 1) * args.samples) for c in range(args.cohort)]
    dense = ClientPlan()  # FedAvg's plan: no mask, no penalty
    start = net.flat.detach().clone()
    local = LocalTrainer(net, config, "classification", x, y)
    group = GroupTrainer(net, config, "classification", x, y)
    plan = group.plan
    bare_net = build_model("small_cnn", (3, 32, 32), 10, seed=0)
    bare_opt = torch.optim.SGD(bare_net.parameters(), lr=0.1)

    def bare() -> None:
        for part in parts:
            with torch.no_grad():
                nn.utils.vector_to_parameters(start, bare_net.parameters())
            order = torch.as_tensor(part)[torch.randperm(len(part))]
            for lo in range(0, len(order), 10):
                sel = order[lo : lo + 10]
                bare_opt.zero_grad()
                F.cross_entropy(bare_net(x[sel]), y[sel]).backward()
                bare_opt.step()

    def one_at_a_time() -> None:
        for c, part in enumerate(parts):
            local.train(client=c, round_index=1, indices=part, start=start, plan=dense,
                        lr=0.1)  # fmt: skip

    def grouped(size: int, stacked: bool):
        def run() -> None:
            group.plan = plan if stacked else None
            for lo in range(0, args.cohort, size):
                members = list(range(lo, min(lo + size, args.cohort)))
                w, _ = group.train(clients=members, round_index=1, parts=parts[lo : lo + size],
                                   start=start, plans=[dense] * len(members), lr=0.1)  # fmt: skip
                for j in range(len(members)):
                    net.load_(w[j])  # what the round loop does for every client

        return run

    variants = {"bare": (bare, None), "local": (one_at_a_time, 1)}
    variants |= {f"stacked {g}": (grouped(g, True), g) for g in args.groups}
    variants |= {f"vmap {g}": (grouped(g, False), g) for g in args.vmap_groups}
    names = list(variants)
    rows: dict[str, list[dict]] = {n: [] for n in names}
    for rep in range(args.repeats):
        for k in range(len(names)):
            name = names[(k + rep) % len(names)]
            fn, size = variants[name]
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            row = {"bench": "grouped", "kind": name, "group_size": size, "repeat": rep,
                   "clients": args.cohort, "updates_per_s": args.cohort / wall,
                   "updates_per_cpu_s": args.cohort / cpu}  # fmt: skip
            rows[name].append(row)
            print(json.dumps(row), flush=True)
    bare_cpu = statistics.median(r["updates_per_cpu_s"] for r in rows["bare"])
    for name in names:
        cpu = statistics.median(r["updates_per_cpu_s"] for r in rows[name])
        print(json.dumps({
            "bench": "grouped", "kind": f"{name}_summary", "group_size": variants[name][1],
            "repeats": len(rows[name]), "clients": args.cohort,
            "updates_per_s": statistics.median(r["updates_per_s"] for r in rows[name]),
            "updates_per_cpu_s": cpu, "cpu_ratio_vs_bare": cpu / bare_cpu,
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
