"""What a run reached, for how many bytes, in a few numbers and a short text."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field

import numpy as np

from .figures import Traffic, traffic_of
from .labels import method_name, run_config
from .masks import OVERALL, ClientAgreement, MaskHistory
from .runfile import Run
from .scores import cost_line, last_cost, scores_at, scores_line
from .units import format_bytes, format_duration, format_percent

NAN = float("nan")


@dataclass(frozen=True)
class Quality:
    """Which metric measures a run's model, and which way is better.

    Attributes
    ----------
    key : str
        Name of the dataset in ``/metrics`` (``test_accuracy`` or ``test_mae``).
    label : str
        Short label for text and axes (``accuracy`` or ``MAE``).
    higher_is_better : bool
        True for accuracy, False for errors.
    """

    key: str
    label: str
    higher_is_better: bool

    def fmt(self, value: float) -> str:
        """Format a value of this metric for text (accuracy as a percentage)."""
        if not math.isfinite(value):
            return "n/a"
        return format_percent(value, 2) if self.key == "test_accuracy" else f"{value:.4g}"


ACCURACY = Quality("test_accuracy", "accuracy", True)
MAE = Quality("test_mae", "MAE", False)


def quality_of(run: Run) -> Quality:
    """The quality metric of a run: accuracy for classification, MAE for regression."""
    if run.task == "regression" or (
        "test_mae" in run.metrics and "test_accuracy" not in run.metrics
    ):
        return MAE
    return ACCURACY


@dataclass(frozen=True)
class Summary:
    """The headline numbers of one run.

    Attributes
    ----------
    path : str
        The run file.
    name : str
        Short name of the run (its directory).
    method : str
        The method as papers name it ("FedSparsify-Global"), from the run's config.
    algorithm, dataset, model, task : str
        What was run (``algorithm``: the config's ``algorithm.name``).
    num_clients : int or None
        Clients in the federation.
    rounds_done : int
        Last completed round.
    rounds_planned : int or None
        Rounds the config asked for.
    status : str
        Raw status attribute (``finished``, ``interrupted``, ``running``, ``failed``).
    status_text : str
        The status in words, with the round where it stopped.
    quality : Quality
        Which metric `best` and `final` are.
    best, final : float
        Best (max accuracy / min MAE) and last evaluated value; NaN if never evaluated.
    best_round, final_round : int or None
        Rounds of `best` and `final`.
    final_sparsity : float
        Sparsity of the prunable set after the last round.
    bytes_up, bytes_down : float
        Total simulated client traffic, all rounds.
    bytes_dense : float
        Dense-equivalent traffic in one direction (a dense download is as large as a
        dense upload, so this serves both).
    mpi_bytes : float
        Bytes the MPI ranks actually exchanged.
    wall_s : float
        Sum of the rounds' wall-clock times.
    seed, world_size : int or None
        Root attributes.
    version, created : str
        Program version that wrote the file, and when the run started.
    format_version : int
        Run-file layout version.
    scores : dict of str to float
        The secondary scores (``test_top5_accuracy``, ``test_f1_macro``, ...,
        ``test_rmse``, ``test_r2``) in the round of `final`.
    cost : dict of str to float
        ``params_dense``, ``params_effective``, ``flops_dense``, ``flops_effective`` after
        the last round (empty for run files without them).
    """

    path: str
    name: str
    method: str
    algorithm: str
    dataset: str
    model: str
    task: str
    num_clients: int | None
    rounds_done: int
    rounds_planned: int | None
    status: str
    status_text: str
    quality: Quality
    best: float
    best_round: int | None
    final: float
    final_round: int | None
    final_sparsity: float
    bytes_up: float
    bytes_down: float
    bytes_dense: float
    mpi_bytes: float
    wall_s: float
    seed: int | None
    world_size: int | None
    version: str
    created: str
    format_version: int
    scores: dict[str, float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)

    @property
    def traffic(self) -> Traffic:
        """The client traffic and its figures (`hpc_fedprune.analysis.figures`)."""
        return Traffic(self.bytes_up, self.bytes_down, self.bytes_dense)

    @property
    def bytes_total(self) -> float:
        """Uplink plus downlink bytes."""
        return self.traffic.total

    @property
    def uplink_vs_dense(self) -> float:
        """``bytes_up / dense`` (figures.uplink_vs_dense)."""
        return self.traffic.uplink_vs_dense

    @property
    def downlink_vs_dense(self) -> float:
        """``bytes_down / dense`` (figures.downlink_vs_dense)."""
        return self.traffic.downlink_vs_dense

    @property
    def traffic_vs_dense(self) -> float:
        """``(bytes_up + bytes_down) / (2 x dense)`` (figures.traffic_vs_dense)."""
        return self.traffic.traffic_vs_dense


def _total(metrics: dict[str, np.ndarray], key: str) -> float:
    values = metrics.get(key)
    return float(np.sum(values, dtype=np.float64)) if values is not None else NAN


#: A run whose status is ``running`` but whose heartbeat is older than both of these has
#: stopped writing: it crashed or was killed (OOM, node failure, kill -9, a second Ctrl-C
#: under mpiexec), none of which lets it change its status.
STALE_AFTER_S = 600.0
STALE_AFTER_ROUNDS = 5


def stale_after(slowest_round_s: float) -> float:
    """Seconds without a heartbeat after which a ``running`` run counts as crashed or killed.

    The larger of `STALE_AFTER_S` and `STALE_AFTER_ROUNDS` times the slowest round so far
    (a run writes its heartbeat after every round).
    """
    rounds = STALE_AFTER_ROUNDS * slowest_round_s if math.isfinite(slowest_round_s) else 0.0
    return max(STALE_AFTER_S, rounds)


def status_text(
    status: str,
    rounds_done: int,
    heartbeat_age_s: float | None = None,
    slowest_round_s: float = NAN,
) -> str:
    """The run's status in words, e.g. ``"interrupted at round 12"``.

    ``heartbeat_age_s`` (seconds since the run last wrote its file; None for files without
    a heartbeat) tells a running run from one that crashed or was killed (`stale_after`).
    """
    if status == "finished":
        return "finished"
    if status == "interrupted":
        return f"interrupted at round {rounds_done}"
    if status == "failed":
        return f"failed after round {rounds_done}"
    if status == "running":
        if heartbeat_age_s is None:
            # A killed job (OOM, node failure, kill -9) never gets to change the attribute.
            return "running (or killed, if no job is running it)"
        ago = format_duration(max(heartbeat_age_s, 0.0))
        if heartbeat_age_s > stale_after(slowest_round_s):
            return f"crashed or killed after round {rounds_done} (no heartbeat for {ago})"
        return f"running (round {rounds_done} written {ago} ago)"
    return f"status {status!r} at round {rounds_done}"


def heartbeat_age(run: Run, now: _dt.datetime | None = None) -> float | None:
    """Seconds since the run's heartbeat (None without one)."""
    if run.heartbeat is None:
        return None
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return (now - run.heartbeat).total_seconds()


def best_and_final(
    rounds: np.ndarray, values: np.ndarray, higher_is_better: bool
) -> tuple[float, int | None, float, int | None]:
    """Best and last evaluated value of a metric, skipping rounds without evaluation (NaN).

    Returns
    -------
    best, best_round, final, final_round
        NaN and None when no round was evaluated. Ties go to the earliest round.
    """
    values = np.asarray(values, dtype=np.float64)
    evaluated = np.flatnonzero(np.isfinite(values))
    if evaluated.size == 0:
        return NAN, None, NAN, None
    v = values[evaluated]
    pick = evaluated[int(np.argmax(v) if higher_is_better else np.argmin(v))]
    last = evaluated[-1]
    return float(values[pick]), int(rounds[pick]), float(values[last]), int(rounds[last])


def summarize(run: Run, now: _dt.datetime | None = None) -> Summary:
    """The headline numbers of a run, from its metrics (masks are not read).

    Parameters
    ----------
    run : Run
        A loaded run.
    now : datetime, optional
        The time to measure the heartbeat's age against (default: now, UTC).

    Returns
    -------
    Summary
    """
    m = run.metrics
    q = quality_of(run)
    rounds = m.get("round", np.arange(1, run.num_rounds + 1))
    if q.key in m:
        best, best_round, final, final_round = best_and_final(rounds, m[q.key], q.higher_is_better)
    else:
        best, best_round, final, final_round = NAN, None, NAN, None
    sparsity = m.get("sparsity")
    a = run.attrs
    traffic = traffic_of(m)
    return Summary(
        path=str(run.path),
        name=run.name,
        method=method_name(run_config(run), run.algorithm),
        algorithm=run.algorithm,
        dataset=run.dataset,
        model=run.model,
        task=run.task,
        num_clients=run.num_clients,
        rounds_done=run.rounds_done,
        rounds_planned=run.rounds_planned,
        status=run.status,
        status_text=status_text(
            run.status, run.rounds_done, heartbeat_age(run, now), _slowest(m.get("wall_s"))
        ),
        quality=q,
        best=best,
        best_round=best_round,
        final=final,
        final_round=final_round,
        final_sparsity=float(sparsity[-1]) if sparsity is not None and len(sparsity) else NAN,
        bytes_up=traffic.bytes_up,
        bytes_down=traffic.bytes_down,
        bytes_dense=traffic.dense,
        mpi_bytes=_total(m, "mpi_bytes"),
        wall_s=_total(m, "wall_s"),
        seed=_int_or_none(a.get("seed")),
        world_size=_int_or_none(a.get("world_size")),
        version=str(a.get("hpc_fedprune_version", "unknown")),
        created=str(a.get("created", "unknown")),
        format_version=run.format_version,
        scores=scores_at(m, _row_of(rounds, final_round)),
        cost=last_cost(m),
    )


def _row_of(rounds: np.ndarray, rnd: int | None) -> int | None:
    """Index of round ``rnd`` in ``rounds`` (None when absent)."""
    if rnd is None:
        return None
    hits = np.flatnonzero(np.asarray(rounds) == rnd)
    return int(hits[-1]) if hits.size else None


def _slowest(wall_s: np.ndarray | None) -> float:
    if wall_s is None or not len(wall_s):
        return NAN
    return float(np.nanmax(wall_s)) if np.isfinite(wall_s).any() else NAN


def _int_or_none(v: object) -> int | None:
    try:
        return int(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def render_summary(
    s: Summary,
    masks: MaskHistory | None = None,
    agreement: list[ClientAgreement] | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> str:
    """The summary as aligned text lines, for a terminal.

    Parameters
    ----------
    s : Summary
        From `summarize`.
    masks : MaskHistory, optional
        Adds a line on the mask history.
    agreement : list of ClientAgreement, optional
        Adds a line on client-mask agreement.
    extra : list of (label, text), optional
        More lines at the end (membership-inference results).
    """
    lines: list[tuple[str, str]] = []
    who = f"{s.method} ({s.algorithm}) on {s.dataset} ({s.model})"
    if s.num_clients is not None:
        who += f", {s.num_clients} clients"
    lines.append(("run", s.path))
    lines.append(("method", who))
    planned = f" of {s.rounds_planned}" if s.rounds_planned else ""
    lines.append(("rounds", f"{s.rounds_done}{planned}: {s.status_text}"))
    q = s.quality
    better = "" if q.higher_is_better else "; lower is better"
    if s.best_round is None:
        lines.append((q.label, "not evaluated yet"))
    else:
        lines.append(
            (
                q.label,
                f"best {q.fmt(s.best)} (round {s.best_round}), "
                f"final {q.fmt(s.final)} (round {s.final_round}){better}",
            )
        )
    if s.scores and s.final_round is not None:
        lines.append(("scores", scores_line(s.scores, s.final_round)))
    if math.isfinite(s.final_sparsity):
        lines.append(
            (
                "sparsity",
                f"final {format_percent(s.final_sparsity)} "
                f"(density {format_percent(1 - s.final_sparsity)})",
            )
        )
    if len(s.cost) == 4:
        lines.append(("model cost", cost_line(s.cost)))
    lines.append(
        (
            "bytes up",
            f"{format_bytes(s.bytes_up)}: uplink_vs_dense {_x(s.uplink_vs_dense)} "
            f"(dense {format_bytes(s.bytes_dense)})",
        )
    )
    lines.append(
        (
            "bytes down",
            f"{format_bytes(s.bytes_down)}: downlink_vs_dense {_x(s.downlink_vs_dense)}",
        )
    )
    lines.append(
        (
            "traffic",
            f"{format_bytes(s.bytes_total)} up + down: traffic_vs_dense {_x(s.traffic_vs_dense)}",
        )
    )
    if math.isfinite(s.mpi_bytes):
        lines.append(("MPI bytes", f"{format_bytes(s.mpi_bytes)} exchanged between ranks"))
    per_round = (
        f" ({s.wall_s / s.rounds_done:.3g} s per round)"
        if s.rounds_done and math.isfinite(s.wall_s)
        else ""
    )
    lines.append(("wall time", f"{format_duration(s.wall_s)}{per_round}"))
    ranks = f", {_plural(s.world_size, 'rank')}" if s.world_size is not None else ""
    lines.append(("written", f"{s.created} by hpc_fedprune {s.version}; seed {s.seed}{ranks}"))
    if masks is not None:
        lines.append(("masks", _masks_line(masks)))
    if agreement:
        lines.append(("client masks", _agreement_line(agreement)))
    lines.extend(extra or ())
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def _x(ratio: float) -> str:
    return f"{ratio:.3f}" if math.isfinite(ratio) else "n/a"


def end_of_run_line(run: Run) -> str:
    """The line a run prints when it finishes: scores, bytes, traffic_vs_dense, time.

    Parameters
    ----------
    run : Run
        The finished run (`load_run` of its directory).
    """
    s = summarize(run)
    key = s.quality.key
    wall = run.attrs.get("wall_s", s.wall_s)
    return (
        f"done: {s.rounds_done} rounds, final {key} {s.final:.4f}, best {s.best:.4f}, "
        f"sparsity {s.final_sparsity:.3f}, bytes up {s.bytes_up / 1e6:.1f} MB "
        f"down {s.bytes_down / 1e6:.1f} MB, traffic_vs_dense {_x(s.traffic_vs_dense)}, "
        f"{float(wall):.1f} s"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _masks_line(h: MaskHistory) -> str:
    o = h.summaries[OVERALL]
    span = f"round {o.first_round}" if o.records == 1 else f"rounds {o.first_round}-{o.last_round}"
    if o.stable_after_round is not None:
        stable = f"unchanged after round {o.stable_after_round}"
    elif o.records < 2:
        stable = "a single record"
    else:
        stable = "still changing in the last round"
    return (
        f"{_plural(o.records, 'record')} ({span}) of {_plural(len(h.tensors), 'tensor')}; "
        f"{stable}; {format_percent(o.ever_regrown_fraction, 2)} of weights ever regrown"
    )


def _agreement_line(rows: list[ClientAgreement]) -> str:
    overall = [r for r in rows if r.tensor == OVERALL]
    last = overall[-1]
    j = f"{last.mean_jaccard:.3f}" if math.isfinite(last.mean_jaccard) else "n/a"
    return (
        f"{_plural(len(overall), 'round')}; last (round {last.round}, "
        f"{_plural(last.clients, 'client')}): "
        f"mean pairwise Jaccard {j}, kept by all {format_percent(last.kept_by_all_fraction)}"
    )
