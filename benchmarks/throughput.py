"""Client updates per second: the simulator at 1, 2, ... ranks against a bare PyTorch loop.

    .venv/bin/python benchmarks/throughput.py --ranks 1 2 --rounds 6 --repeats 5
    .venv/bin/python benchmarks/throughput.py --quick --ranks 1      # smoke run
    .venv/bin/python benchmarks/throughput.py --ranks 1 --cohort 128 --group-sizes 1 8 32 128

Workload, modelled on pfl-research's CIFAR-10 benchmark: generated 3x32x32 images, 1000
clients x 50 samples (IID), 50 clients per round, 1 local epoch, batch 10, SGD lr 0.1 (no
momentum), the small CNN (conv 32@3x3, pool, conv 64@3x3, pool, FC 64, FC 10).

- ``simulator``: ``python -m hpc_fedprune run`` launched with the venv's ``mpiexec -n R``
  (FedAvg, no evaluation before the last round, no checkpoints), OMP_NUM_THREADS=1.
- ``bare``: a plain PyTorch loop in one fresh process (``--bare-worker``, imports torch only):
  one model reused, the global weights loaded into it for every client, the same number
  and size of batches (index slices of one tensor holding all the images), then
  ``acc += weight * (local - global)`` in float32 and ``global += acc`` after the round.
  It is the floor for the simulator's overhead.
- ``--group-sizes``: the simulator once per ``training.group_size`` (1 = one client at a
  time; G > 1 trains G clients per batched step, `hpc_fedprune.training.grouped`); each row
  carries its ``group_size`` (None for the bare loop).

Memory: ``peak_rss_mb`` is the largest peak resident set (VmHWM) of one rank process, read
with the CPU samples, and the bare loop's ``ru_maxrss``.

Two clocks, because the benchmark machine may be shared:

- wall clock: the simulator's own per-round ``wall_s`` (metrics.jsonl) and the bare loop's
  round times. ``updates_per_s`` = cohort / median timed round; ``updates_per_s_per_rank``
  divides by the ranks; ``ratio_vs_bare`` = that / the bare loop's updates/s of the same
  repeat. This is the number that matters on dedicated cores, and the one that other
  processes on the machine disturb most.
- CPU time: the CPU seconds that the rank processes (all ranks together) use per round,
  read from /proc at every round boundary (Linux only; else null), and the bare loop's
  process CPU time per round. ``updates_per_cpu_s`` = cohort / median CPU seconds per
  round: updates per second per rank on a core of its own, busy-waiting included. Much
  less sensitive to other load; ``cpu_ratio_vs_bare`` compares it with the bare loop.

Allocator (``--malloc``, default both): ``default`` glibc, or ``tuned`` with
MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ raised, for the bare loop and the simulator
alike. With the default, glibc returns freed training buffers to the OS and faults them in
again (README, "Training many clients at once"), by an amount that depends on what the process
allocated before; ``faults_per_update`` (minor page faults per client update) shows it.

Timed rounds: the first round is a warm-up and the simulator's last round also evaluates
the model (the simulator always evaluates at the end), so with ``--rounds`` >= 3 both sides
are timed on rounds 2 .. rounds-1 (with fewer rounds, as in ``--quick``, every round that
has a time). Each repeat runs the bare loop and then the simulator at every rank count, so
that drifting load affects them alike; the ``*_summary`` lines give medians over repeats.
No timed assertions anywhere. Every line printed is one JSON object with the keys in ``KEYS``.
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
KEYS = (
    "bench",
    "kind",
    "malloc",
    "ranks",
    "repeat",
    "clients",
    "cohort",
    "samples_per_client",
    "batch_size",
    "rounds",
    "timed_rounds",
    "round_s_median",
    "updates_per_s",
    "updates_per_s_per_rank",
    "ratio_vs_bare",
    "cpu_round_s_median",
    "updates_per_cpu_s",
    "cpu_ratio_vs_bare",
    "faults_per_update",
    "group_size",
    "peak_rss_mb",
)


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
        nn.Conv2d(3, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 6 * 6, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=args.lr)
    global_w = nn.utils.parameters_to_vector(params).detach().clone()

    round_s, cpu_s, faults = [], [], []
    for _ in range(args.rounds):
        t0, c0, f0 = time.perf_counter(), time.process_time(), minor_faults()
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
        cpu_s.append(time.process_time() - c0)
        faults.append(minor_faults() - f0)
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(
        json.dumps({"round_s": round_s, "cpu_s": cpu_s, "faults": faults, "peak_rss_mb": peak}),
        flush=True,
    )


def minor_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ------------------------------------------------------------ CPU time of the rank processes


def python_descendants(root: int) -> list[int]:
    """PIDs of the python processes below ``root`` (the MPI ranks under mpiexec)."""
    children: dict[int, list[int]] = {}
    comm: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, _, rest = stat.partition(" (")[2].rpartition(") ")
        pid, ppid = int(entry.name), int(rest.split()[1])
        comm[pid] = name
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            todo.append(child)
            if comm[child].startswith("python"):
                found.append(child)
    return found


def cpu_and_faults(pids: list[int]) -> tuple[float, int] | None:
    """CPU seconds (schedstat, all threads) and minor page faults of ``pids`` so far."""
    cpu_ns = faults = 0
    try:
        for pid in pids:
            for task in Path(f"/proc/{pid}/task").iterdir():
                cpu_ns += int((task / "schedstat").read_text().split()[0])
            faults += int(Path(f"/proc/{pid}/stat").read_text().rpartition(") ")[2].split()[7])
    except (OSError, ValueError, IndexError):
        return None
    return cpu_ns / 1e9, faults


# ------------------------------------------------------------------------------- launchers


# glibc returns freed 0.3-1.2 MB training buffers to the OS and faults them in again at the
# next step (README, "Training many clients at once"); how much depends on what the process
# allocated before. "tuned" raises both thresholds for the bare loop and the simulator alike.
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(64 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def child_env(malloc: str = "default") -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    for key in MALLOC_TUNED:
        env.pop(key, None)
    if malloc == "tuned":
        env.update(MALLOC_TUNED)
    return env


def run_bare(args, malloc: str) -> tuple[list[float], list[float], list[int]]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--bare-worker",
        "--rounds",
        str(args.rounds),
        "--clients",
        str(args.clients),
        "--cohort",
        str(args.cohort),
        "--samples",
        str(args.samples),
        "--batch",
        str(args.batch),
        "--lr",
        str(args.lr),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(malloc), cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"bare loop failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["round_s"], result["cpu_s"], result["faults"], result["peak_rss_mb"]


def simulator_overrides(args, group_size: int = 1) -> list[str]:
    return [
        f"training.group_size={group_size}",
        "data.name=synthetic",
        "data.shape=[3,32,32]",
        "data.num_classes=10",
        f"data.num_train={args.clients * args.samples}",
        f"data.num_test={args.num_test}",
        "partition.scheme=iid",
        f"partition.num_clients={args.clients}",
        "model.name=small_cnn",
        "algorithm.name=fedavg",
        f"federation.clients_per_round={args.cohort}",
        f"federation.rounds={args.rounds}",
        f"federation.eval_every={args.rounds + 1000}",
        "federation.server_momentum=0",
        "training.optimizer=sgd",
        f"training.lr={args.lr}",
        "training.momentum=0",
        "training.local_epochs=1",
        "training.local_steps=0",
        f"training.batch_size={args.batch}",
        "runtime.device=cpu",
        "runtime.threads=1",
        "output.progress=false",
        "output.checkpoint_every=0",
    ]


def run_simulator(args, ranks: int, out: Path, malloc: str, group_size: int = 1):
    """Per-round wall_s, CPU seconds and minor page faults (all ranks), and the loop time.

    CPU time is sampled whenever rank 0 appends a round to metrics.jsonl, so a round's CPU
    time runs from the end of one round's write to the next (writes included); round 1,
    whose start is not observed, and rounds whose boundary was missed get None.
    """
    mpiexec = Path(sys.executable).with_name("mpiexec")
    cmd = [
        str(mpiexec),
        "-n",
        str(ranks),
        sys.executable,
        "-m",
        "hpc_fedprune",
        "run",
        "--out",
        str(out),
        *simulator_overrides(args, group_size),
    ]
    log = out.with_name(out.name + ".log")
    metrics = out / "metrics.jsonl"
    boundaries: list[tuple[float, int] | None] = []  # (CPU s, faults) at each round's end
    pids: list[int] | None = None
    peak_mb: float | None = None
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=child_env(malloc), cwd=REPO
        )
        size = 0
        while proc.poll() is None:
            time.sleep(0.005)
            try:
                new_size = metrics.stat().st_size
            except OSError:
                continue
            if new_size == size:
                continue
            size = new_size
            lines = metrics.read_bytes().count(b"\n")
            if lines <= len(boundaries):
                continue
            if pids is None and sys.platform.startswith("linux"):
                pids = python_descendants(proc.pid)
            sample = cpu_and_faults(pids) if pids else None
            peak_mb = max(filter(None, [peak_mb, peak_rss_mb(pids or [])]), default=None)
            boundaries += [None] * (lines - len(boundaries) - 1) + [sample]
    if proc.returncode != 0:
        raise SystemExit(f"simulator failed on {ranks} rank(s):\n{log.read_text()}")
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    round_s = [float(r["wall_s"]) for r in rows]
    boundaries += [None] * (len(rows) - len(boundaries))
    pairs = list(zip(boundaries[:-1], boundaries[1:], strict=True))
    cpu_s = [None] + [b[0] - a[0] if a and b else None for a, b in pairs]
    faults = [None] + [b[1] - a[1] if a and b else None for a, b in pairs]
    loop_s = None
    try:
        from hpc_fedprune.analysis import load_run

        loop_s = float(load_run(out).attrs["wall_s"])
    except Exception:  # noqa: BLE001 - the cross-check is optional
        pass
    return round_s, cpu_s, faults, loop_s, peak_mb


def peak_rss_mb(pids: list[int]) -> float | None:
    """The largest peak resident set size (VmHWM) among ``pids``, in MiB."""
    peaks = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except (OSError, ValueError, IndexError):
            continue
    return max(peaks) if peaks else None


def timed(values: list) -> list:
    """Drop the warm-up round and the (evaluating) last round when there are enough rounds."""
    kept = values[1:-1] if len(values) >= 3 else list(values)
    return [v for v in kept if v is not None]


def record(
    args, kind: str, ranks: int, repeat, round_s, cpu_s, faults, peak_mb, bare: dict | None, **extra
) -> dict:
    t = timed(round_s)
    med = statistics.median(t)
    ups = args.cohort / med
    per_rank = ups / ranks
    c = timed(cpu_s)
    cpu_med = statistics.median(c) if c else None
    cpu_ups = args.cohort / cpu_med if cpu_med else None
    if bare is None:
        cpu_ratio = 1.0
    else:
        bare_cpu = bare["updates_per_cpu_s"]
        cpu_ratio = cpu_ups / bare_cpu if cpu_ups and bare_cpu else None
    return {
        "bench": "throughput",
        "kind": kind,
        "ranks": ranks,
        "repeat": repeat,
        "clients": args.clients,
        "cohort": args.cohort,
        "samples_per_client": args.samples,
        "batch_size": args.batch,
        "rounds": args.rounds,
        "timed_rounds": len(t),
        "round_s_median": med,
        "updates_per_s": ups,
        "updates_per_s_per_rank": per_rank,
        "ratio_vs_bare": per_rank / bare["updates_per_s"] if bare else 1.0,
        "cpu_round_s_median": cpu_med,
        "updates_per_cpu_s": cpu_ups,
        "cpu_ratio_vs_bare": cpu_ratio,
        "faults_per_update": median_or_none(timed(faults)) / args.cohort if timed(faults) else None,
        "round_s": round_s,
        "cpu_s": cpu_s,
        "peak_rss_mb": peak_mb,
        **extra,
    }


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="rounds per run (default 6)")
    parser.add_argument("--ranks", type=int, nargs="+", help="simulator rank counts (default 1 2)")
    parser.add_argument("--clients", type=int, help="clients in the population (default 1000)")
    parser.add_argument("--cohort", type=int, help="clients per round (default 50)")
    parser.add_argument("--samples", type=int, help="samples per client (default 50)")
    parser.add_argument("--batch", type=int, default=10, help="local batch size")
    parser.add_argument("--lr", type=float, default=0.1, help="client learning rate")
    parser.add_argument("--repeats", type=int, help="repeats of every measurement (default 3)")
    parser.add_argument(
        "--num-test", type=int, help="simulator test set size (only its last round evaluates)"
    )
    parser.add_argument(
        "--malloc",
        nargs="+",
        choices=("default", "tuned"),
        default=None,
        help="glibc allocator settings for both sides: default, and/or tuned "
        "(MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ raised); default both",
    )
    parser.add_argument(
        "--group-sizes",
        type=int,
        nargs="+",
        default=[1],
        help="simulator training.group_size values (default 1)",
    )
    parser.add_argument("--keep", help="keep the simulator's run directories under this folder")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny smoke run: 8 clients x 10 samples, cohort 4, 1 round, "
        "1 repeat, default malloc",
    )
    parser.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = dict(
        rounds=1,
        ranks=[1, 2],
        clients=8,
        cohort=4,
        samples=10,
        repeats=1,
        num_test=20,
        malloc=["default"],
    )
    full = dict(
        rounds=6,
        ranks=[1, 2],
        clients=1000,
        cohort=50,
        samples=50,
        repeats=3,
        num_test=100,
        malloc=["default", "tuned"],
    )
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.cohort > args.clients or args.rounds < 1:
        parser.error("need --rounds >= 1 and --cohort <= --clients")
    if args.bare_worker:
        bare_worker(args)
        return

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="throughput-"))
    base.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    results: dict[tuple[str, str, int, int | None], list[dict]] = {}
    try:
        for rep in range(args.repeats):
            for malloc in args.malloc:
                bare = record(
                    args,
                    "bare",
                    1,
                    rep,
                    *run_bare(args, malloc),
                    None,
                    malloc=malloc,
                    load_avg_1m=load_average(),
                    group_size=None,
                    **machine,
                )
                emit(bare)
                results.setdefault(("bare", malloc, 1, None), []).append(bare)
                for ranks in args.ranks:
                    for g in args.group_sizes:
                        out = base / f"sim-{malloc}-n{ranks}-g{g}-r{rep}-{int(time.time() * 1e3)}"
                        *timings, loop_s, peak = run_simulator(args, ranks, out, malloc, g)
                        row = record(
                            args,
                            "simulator",
                            ranks,
                            rep,
                            *timings,
                            peak,
                            bare,
                            malloc=malloc,
                            load_avg_1m=load_average(),
                            loop_s=loop_s,
                            rounds_s_sum=sum(timings[0]),
                            group_size=g,
                            **machine,
                        )
                        emit(row)
                        results.setdefault(("simulator", malloc, ranks, g), []).append(row)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    for (kind, malloc, ranks, group_size), rows in results.items():
        ups = statistics.median(r["updates_per_s"] for r in rows)
        emit(
            {
                "bench": "throughput",
                "kind": f"{kind}_summary",
                "malloc": malloc,
                "ranks": ranks,
                "repeat": None,
                "clients": args.clients,
                "cohort": args.cohort,
                "samples_per_client": args.samples,
                "batch_size": args.batch,
                "rounds": args.rounds,
                "timed_rounds": rows[0]["timed_rounds"],
                "round_s_median": statistics.median(r["round_s_median"] for r in rows),
                "updates_per_s": ups,
                "updates_per_s_per_rank": ups / ranks,
                "ratio_vs_bare": statistics.median(r["ratio_vs_bare"] for r in rows),
                "cpu_round_s_median": median_or_none(r["cpu_round_s_median"] for r in rows),
                "updates_per_cpu_s": median_or_none(r["updates_per_cpu_s"] for r in rows),
                "cpu_ratio_vs_bare": median_or_none(r["cpu_ratio_vs_bare"] for r in rows),
                "faults_per_update": median_or_none(r["faults_per_update"] for r in rows),
                "group_size": group_size,
                "peak_rss_mb": median_or_none(r["peak_rss_mb"] for r in rows),
                "repeats": len(rows),
                **machine,
            }
        )


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


if __name__ == "__main__":
    main()
