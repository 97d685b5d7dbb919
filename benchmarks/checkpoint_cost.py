"""Cost of the run file's mask history and of checkpoints, for LeNet-5 and ResNet-18 sizes.

Prints one JSON line per model: bytes and seconds of one mask record (bit-packed rows of
every prunable tensor, appended to run.h5), of one checkpoint (snapshot of run.h5 plus
weights, mask and state, flushed to disk), and of one local training step of the model,
so the history cost can be set against a round's time (``--steps-per-round`` steps).
Records and checkpoints are timed twice: with the bare writers (`RunFile`,
`write_checkpoint`) and through `RunDir`, which the round loop uses (space reserved
before every write, the metrics.jsonl line, signals held), to show what its guarantees
cost.

    .venv/bin/python benchmarks/checkpoint_cost.py [--rounds 20] [--steps-per-round 500]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from hpc_fedprune.models import FlatModel, build_model  # noqa: E402
from hpc_fedprune.pruning.prunable import prunable_mask  # noqa: E402
from hpc_fedprune.sim.loop import tensor_masks  # noqa: E402
from hpc_fedprune.store import RunFile  # noqa: E402
from hpc_fedprune.store.checkpoint import Checkpoint, write_checkpoint  # noqa: E402
from hpc_fedprune.store.rundir import RunDir  # noqa: E402

MODELS = {"lenet5": ((1, 28, 28), 10), "resnet18_cifar": ((3, 32, 32), 10)}


def step_seconds(model: FlatModel, shape, classes, batch=32, reps=5) -> float:
    """Median seconds of one SGD step (forward, backward, update) at batch 32."""
    x = torch.randn(batch, *shape)
    y = torch.randint(0, classes, (batch,))
    opt = torch.optim.SGD(model.module.parameters(), lr=0.01)
    times = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        model.zero_grad()
        F.cross_entropy(model.module(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def measure(name: str, rounds: int, steps_per_round: int) -> dict:
    shape, classes = MODELS[name]
    fm = FlatModel(build_model(name, shape, classes, seed=0))
    prunable = prunable_mask(fm.layout, "all_trainable")
    rng = np.random.default_rng(0)
    records = []
    mask = torch.ones_like(prunable)
    for rnd in range(1, rounds + 1):
        mask = mask & torch.from_numpy(rng.random(fm.numel) > 0.05)  # 5% more pruned
        records.append((rnd, tensor_masks(fm, prunable, mask | ~prunable)))
    state = Checkpoint(
        rounds,
        fm.flat.numpy().copy(),
        mask.numpy(),
        {"momentum": fm.flat.numpy().astype(np.float64)},
    )
    timings = {}
    for writer in ("bare", "rundir"):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            run = RunFile(out / "run.h5")
            run.create(
                attrs={"algorithm": "bench"},
                layout=fm.layout,
                prunable=prunable.numpy(),
                partition={"sizes": np.ones(4, dtype=np.int64)},
            )
            run_dir = RunDir(out)
            write_times = []
            for rnd, masks in records:
                metrics = {"round": rnd, "test_accuracy": 0.5, "wall_s": 1.0}
                t = time.perf_counter()
                if writer == "bare":
                    run.append_round(metrics, mask_record=(rnd, masks))
                else:
                    run_dir.append_round(metrics, mask=masks)
                write_times.append(time.perf_counter() - t)
            history_bytes = (out / "run.h5").stat().st_size
            t = time.perf_counter()
            if writer == "bare":
                path = write_checkpoint(out, state)
            else:
                path = run_dir.write_checkpoint(state)
            timings[writer] = (float(np.median(write_times)), time.perf_counter() - t)
            checkpoint_bytes = path.stat().st_size
    step = step_seconds(fm, shape, classes)
    record_s, checkpoint_s = timings["bare"]
    return {
        "benchmark": "checkpoint_cost",
        "model": name,
        "params": fm.numel,
        "mask_record_s": record_s,
        "mask_record_bytes": int(
            sum((i.numel + 7) // 8 for i in fm.layout if prunable[i.slice].any())
        ),
        "run_file_bytes_after_rounds": history_bytes,
        "rounds": rounds,
        "checkpoint_s": checkpoint_s,
        "mask_record_rundir_s": timings["rundir"][0],
        "checkpoint_rundir_s": timings["rundir"][1],
        "checkpoint_bytes": checkpoint_bytes,
        "train_step_s": step,
        "round_s_estimate": step * steps_per_round,
        "history_share_of_round": record_s / (step * steps_per_round),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--steps-per-round",
        type=int,
        default=500,
        help="local steps of all of a rank's clients in one round (10 clients x 50)",
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        print(json.dumps(measure(name, args.rounds, args.steps_per_round)), flush=True)


if __name__ == "__main__":
    main()
