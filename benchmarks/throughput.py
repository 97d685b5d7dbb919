"""Client updates per second: the simulator at 1, 2, ... ranks against a bare PyTorch loop.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/throughput.py --ranks 1 2 --rounds 6 --repeats 3

Workload, modelled on pfl-research's CIFAR-10 benchmark: generated 3x32x32 images, 1000
clients x 50 samples (IID), 50 clients per round, 1 local epoch, batch 10, SGD lr 0.1 (no
momentum), the small CNN (conv 32@3x3, pool, conv 64@3x3, pool, FC 64, FC 10).

- ``simulator``: ``python -m hpc_fedprune run`` launched with the venv's ``mpiexec -n R``
  (FedAvg, ``federation.eval_every`` larger than the run). Round times are the run's own
  ``wall_s`` (metrics.jsonl).
- ``bare``: a plain PyTorch loop in one fresh process (``--bare-worker``, imports torch only):
  one model reused, the global weights loaded into it for every client, the same number
  and size of batches (index slices of one tensor holding all 50000 images), then
  ``acc += weight * (local - global)`` in float32 and ``global += acc`` after the round.
  It is the floor for the simulator's overhead.

Timed rounds: the first round is a warm-up and the simulator's last round also evaluates the
model (the simulator always evaluates at the end), so with ``--rounds`` >= 3 both sides are
timed on rounds 2 .. rounds-1 (with fewer rounds, as in ``--quick``, every round is timed).
``updates_per_s`` is the cohort size over the median timed round.
``ratio_vs_bare`` is ``updates_per_s_per_rank`` divided by the bare loop's updates/s of the
same repeat; the ``summary`` lines give the medians over ``--repeats``. No timed assertions:
the numbers depend on the machine and on whatever else runs on it.

Every line printed is one JSON object with at least the keys in ``KEYS``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS = ("bench", "kind", "ranks", "repeat", "clients", "cohort", "samples_per_client",
        "batch_size", "rounds", "timed_rounds", "round_s_median", "updates_per_s",
        "updates_per_s_per_rank", "ratio_vs_bare")


# ------------------------------------------------------------------ the bare loop (torch only)


def bare_worker(args) -> None:
    """The floor: plain PyTorch FedAvg training, one process, one reused model. Prints JSON."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    n_train = args.clients * args.samples
    x = torch.randn(n_train, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (n_train,), generator=gen)
    parts = torch.randperm(n_train, generator=gen).view(args.clients, args.samples)

    model = nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 6 * 6, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=args.lr)
    global_w = nn.utils.parameters_to_vector(params).detach().clone()

    round_s = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        cohort = torch.randperm(args.clients, generator=gen)[: args.cohort]
        acc = torch.zeros_like(global_w)
        loss_sum = torch.zeros(())
        for c in cohort.tolist():
            with torch.no_grad():
                nn.utils.vector_to_parameters(global_w, params)  # load the global weights
            idx = parts[c]
            order = idx[torch.randperm(len(idx), generator=gen)]
            for lo in range(0, len(order), args.batch):
                sel = order[lo : lo + args.batch]
                xb, yb = x[sel], y[sel]
                opt.zero_grad()
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * len(sel)
            with torch.no_grad():
                local = nn.utils.parameters_to_vector(params)
                acc.add_(local - global_w, alpha=1.0 / args.cohort)
        global_w += acc
        float(loss_sum)  # the round's training loss, as the simulator reports it
        round_s.append(time.perf_counter() - t0)
    print(json.dumps({"round_s": round_s}), flush=True)


# ------------------------------------------------------------------------------- launchers


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_bare(args) -> list[float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--bare-worker",
           "--rounds", str(args.rounds), "--clients", str(args.clients), "--cohort", str(args.cohort),
           "--samples", str(args.samples), "--batch", str(args.batch), "--lr", str(args.lr)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"bare loop failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["round_s"]


def simulator_overrides(args) -> list[str]:
    return [
        "data.name=synthetic", "data.shape=[3,32,32]", "data.num_classes=10",
        f"data.num_train={args.clients * args.samples}", f"data.num_test={args.num_test}",
        "partition.scheme=iid", f"partition.num_clients={args.clients}",
        "model.name=small_cnn", "algorithm.name=fedavg",
        f"federation.clients_per_round={args.cohort}", f"federation.rounds={args.rounds}",
        f"federation.eval_every={args.rounds + 1000}", "federation.server_momentum=0",
        "training.optimizer=sgd", f"training.lr={args.lr}", "training.momentum=0",
        "training.local_epochs=1", "training.local_steps=0", f"training.batch_size={args.batch}",
        "runtime.device=cpu", "runtime.threads=1", "output.progress=false",
    ]


def run_simulator(args, ranks: int, out: Path) -> tuple[list[float], float | None]:
    """Per-round wall_s of one run and the run's whole loop time (run.h5 attribute)."""
    mpiexec = Path(sys.executable).with_name("mpiexec")
    cmd = [str(mpiexec), "-n", str(ranks), sys.executable, "-m", "hpc_fedprune", "run",
           "--out", str(out), *simulator_overrides(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(), cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"simulator failed on {ranks} rank(s):\n{proc.stdout}\n{proc.stderr}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    loop_s = None
    try:
        import h5py

        with h5py.File(out / "run.h5", "r") as f:
            loop_s = float(f.attrs["wall_s"])
    except Exception:  # noqa: BLE001 - the cross-check is optional
        pass
    return [float(r["wall_s"]) for r in rows], loop_s


def timed(round_s: list[float]) -> list[float]:
    """Drop the warm-up round and the (evaluating) last round when there are enough rounds."""
    return round_s[1:-1] if len(round_s) >= 3 else list(round_s)


def record(args, kind: str, ranks: int, repeat, round_s: list[float], bare_ups, **extra) -> dict:
    t = timed(round_s)
    med = statistics.median(t)
    ups = args.cohort / med
    per_rank = ups / ranks
    return {
        "bench": "throughput", "kind": kind, "ranks": ranks, "repeat": repeat,
        "clients": args.clients, "cohort": args.cohort, "samples_per_client": args.samples,
        "batch_size": args.batch, "rounds": args.rounds, "timed_rounds": len(t),
        "round_s_median": med, "updates_per_s": ups, "updates_per_s_per_rank": per_rank,
        "ratio_vs_bare": (per_rank / bare_ups) if bare_ups else None,
        "round_s": round_s, **extra,
    }


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="rounds per run (default 6)")
    parser.add_argument("--ranks", type=int, nargs="+", default=None, help="simulator rank counts (default 1 2)")
    parser.add_argument("--clients", type=int, default=None, help="clients in the population (default 1000)")
    parser.add_argument("--cohort", type=int, default=None, help="clients per round (default 50)")
    parser.add_argument("--samples", type=int, default=None, help="samples per client (default 50)")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=None, help="repeats of every measurement (default 3)")
    parser.add_argument("--num-test", type=int, default=100, help="simulator test set (only the last round evaluates)")
    parser.add_argument("--keep", help="keep the simulator's run directories under this folder")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny smoke run: 8 clients x 10 samples, cohort 4, 1 round, 1 repeat")
    parser.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = dict(rounds=1, ranks=[1, 2], clients=8, cohort=4, samples=10, repeats=1)
    full = dict(rounds=6, ranks=[1, 2], clients=1000, cohort=50, samples=50, repeats=3)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.cohort > args.clients:
        parser.error("--cohort exceeds --clients")
    if args.bare_worker:
        bare_worker(args)
        return

    os.environ["OMP_NUM_THREADS"] = "1"
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="throughput-"))
    base.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()}
    results: dict[tuple[str, int], list[dict]] = {}
    try:
        # Interleave the kinds within every repeat, so that drifting load on a shared machine
        # affects them alike; each simulator rate is compared with the bare rate of its repeat.
        for rep in range(args.repeats):
            bare = record(args, "bare", 1, rep, run_bare(args), None, **machine)
            bare["ratio_vs_bare"] = 1.0
            emit(bare)
            results.setdefault(("bare", 1), []).append(bare)
            for ranks in args.ranks:
                out = base / f"sim-n{ranks}-r{rep}-{int(time.time() * 1000)}"
                round_s, loop_s = run_simulator(args, ranks, out)
                row = record(args, "simulator", ranks, rep, round_s, bare["updates_per_s"],
                             loop_s=loop_s, rounds_s_sum=sum(round_s), **machine)
                emit(row)
                results.setdefault(("simulator", ranks), []).append(row)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    for (kind, ranks), rows in results.items():
        ups = statistics.median(r["updates_per_s"] for r in rows)
        emit({
            "bench": "throughput", "kind": f"{kind}_summary", "ranks": ranks, "repeat": None,
            "clients": args.clients, "cohort": args.cohort, "samples_per_client": args.samples,
            "batch_size": args.batch, "rounds": args.rounds, "timed_rounds": rows[0]["timed_rounds"],
            "round_s_median": statistics.median(r["round_s_median"] for r in rows),
            "updates_per_s": ups, "updates_per_s_per_rank": ups / ranks,
            "ratio_vs_bare": statistics.median(r["ratio_vs_bare"] for r in rows),
            "repeats": len(rows), **machine,
        })


if __name__ == "__main__":
    main()
