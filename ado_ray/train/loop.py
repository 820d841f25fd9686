"""The GPT-2 training loop with a mixture policy in the loop. Plain Python: no Ray here.

One function, :func:`run_training`, runs a whole trial on one process, or on one rank of a DDP
group (the Ray Train shell in :mod:`ado_ray.distributed.trainer` supplies the rank, the device,
the DDP wrapper and the checkpoint hook). It is a flat loop over a :class:`TrainState` (where the
run is: step, tokens, timings, last losses), built from :class:`Runtime` and small helpers. Each
step (:func:`_train_step`):

1. ask the mixture for the step's weights (policy wait);
2. draw the global batch with the :class:`~ado_ray.data.MixtureSampler`, keep this rank's shard;
3. forward/backward with per-sequence losses (no reduction), so each domain's loss sum and
   sequence count come out of the same pass; under DDP they are all-reduced across ranks;
4. step the optimiser; hand the all-reduced per-domain statistics to the mixture (rank 0).

Before training, every ``eval_interval`` steps and at the end, every domain's held-out set is
evaluated (:func:`_evaluate`); a policy that wants it gets the per-domain held-out losses too
(``observe_eval``), in order with the step observations, so its weights stay a pure function of
what it has seen (:mod:`ado_ray.train.mixture`). Each evaluation is reported, with a checkpoint
every ``checkpoint_interval`` steps and at the end (:func:`_report`). The mixture is any
:class:`~ado_ray.train.mixture.MixtureClient`. See ``docs/architecture.md`` for the whole picture.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ado_ray.data import MixtureSampler, load_corpus
from ado_ray.policies import MixturePolicy, make_policy, policy_class
from ado_ray.train.config import TrainConfig, resolve_policy_options, run_total_steps
from ado_ray.train.metrics import aggregate
from ado_ray.train.mixture import LocalMixture, MixtureClient, MixtureController
from ado_ray.train.model import build_model, flops_per_token

log = logging.getLogger(__name__)

ReportFn = Callable[[dict[str, Any], "dict[str, Any] | None"], None]

#: The layout of the training checkpoint. Version 1 had no ``version`` nor ``eval_tokens``.
CHECKPOINT_VERSION = 2
TIMERS = ("data", "compute", "policy_wait", "eval", "wall", "startup")


@dataclass
class Runtime:
    """How the loop meets the outside world; the defaults are a single local process."""

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None
    # Wraps the model for data parallelism (Ray Train's prepare_model); identity by default.
    prepare_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    # Called at every evaluation and checkpoint with the metrics, and at checkpoint steps with the
    # full training state (rank 0 only; None on other ranks and at eval-only steps).
    report: ReportFn | None = None
    resume_state: dict[str, Any] | None = None
    # Called with the step index before each step; tests use it to inject failures.
    on_step: Callable[[int], None] | None = None
    # time.perf_counter() when this process's training function began, before it imported the
    # loop (a Ray Train worker): the start-up time counts from it. None: from run_training's call.
    started_at: float | None = None


@dataclass
class TrainState:
    """Where a run is. ``step`` is the next step to run (the number of steps done)."""

    step: int = 0
    tokens_seen: int = 0  # training tokens, all ranks
    eval_tokens: int = 0  # held-out tokens evaluated, all ranks, every evaluation
    eval_round: int = 0  # evaluations reported (the step-0 one is not)
    timing: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIMERS, 0.0))
    train_loss: float = float("nan")  # the last step's mean training loss
    last_eval: dict[str, Any] | None = None  # the last evaluation's losses and metrics
    last_checkpoint: int = 0  # steps done at the last checkpoint (or the start)


def make_local_mixture(cfg: TrainConfig, corpus: Any) -> LocalMixture:
    """The in-process mixture of ``cfg``'s policy."""
    policy = make_policy(cfg.policy, corpus.num_domains, **resolve_policy_options(cfg, corpus))
    return LocalMixture(MixtureController(policy, lag=cfg.training.mixture_lag))


def _decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # Matrices decay; biases, LayerNorm gains and 1-D parameters do not (GPT-2/nanoGPT practice).
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def lr_lambda(warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    """Linear warmup to the peak, then cosine decay to ``min_ratio`` of it at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _all_reduce(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sequence_losses(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss of each sequence (nats per predicted token), shape [batch]."""
    logits = model(input_ids=input_ids).logits[:, :-1]
    targets = input_ids[:, 1:]
    per_token = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="none"
    )
    return per_token.view(targets.shape).mean(dim=1)


@dataclass(frozen=True)
class DevicePlan:
    """Every device-specific choice of the loop, made in one place (:func:`device_plan`), so
    that the CPU tests exercise all the rest of the code the GPU runs."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None: full fp32
    fused_adamw: bool  # the fused CUDA AdamW kernel; foreach on CPU
    cuda_rng: bool  # save and restore the device's RNG (dropout on the GPU)

    def autocast(self) -> Any:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


#: Dense bf16 tensor-core peaks (FLOP/s) by device name, for MFU; ADO_RAY_PEAK_FLOPS overrides.
PEAK_BF16_FLOPS: dict[str, float] = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak, or None where unknown (CPUs, unlisted GPUs)."""
    if os.environ.get("ADO_RAY_PEAK_FLOPS"):
        return float(os.environ["ADO_RAY_PEAK_FLOPS"])
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def device_plan(device: torch.device, precision: str) -> DevicePlan:
    """``precision``: ``auto`` (bf16 autocast on CUDA, fp32 elsewhere), ``bf16`` (autocast on
    any device, CPU included) or ``fp32``."""
    cuda = device.type == "cuda"
    bf16 = precision == "bf16" or (precision == "auto" and cuda)
    return DevicePlan(device, torch.bfloat16 if bf16 else None, fused_adamw=cuda, cuda_rng=cuda)


def _autocast(device: torch.device, precision: str) -> Any:
    return device_plan(device, precision).autocast()


@torch.no_grad()
def evaluate_counts(
    model: torch.nn.Module,
    corpus: Any,
    cfg: TrainConfig,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Every domain's mean held-out loss (nats/token) and the number of its sequences evaluated
    (all ranks together); sequences are sharded across ranks."""
    tr = cfg.training
    k = corpus.num_domains
    stats = torch.zeros(2 * k, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    for d in range(k):
        val = corpus.val[d]
        n = len(val) if tr.eval_sequences is None else min(len(val), int(tr.eval_sequences))
        mine = np.arange(rank, n, world_size)
        for start in range(0, len(mine), tr.eval_batch_size):
            idx = mine[start : start + tr.eval_batch_size]
            batch = torch.as_tensor(np.asarray(val[idx], dtype=np.int64), device=device)
            with _autocast(device, tr.precision):
                losses = sequence_losses(model, batch)
            stats[d] += losses.double().sum()
            stats[k + d] += len(idx)
    model.train(was_training)
    _all_reduce(stats, world_size)
    host = stats.cpu().numpy()
    return host[:k] / np.maximum(host[k:], 1), host[k:].copy()


def evaluate(
    model: torch.nn.Module,
    corpus: Any,
    cfg: TrainConfig,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> np.ndarray:
    """Every domain's mean held-out loss (nats/token); sequences are sharded across ranks."""
    return evaluate_counts(model, corpus, cfg, device, rank, world_size)[0]


def serialise_state(state: dict[str, Any]) -> dict[str, Any]:
    """A deep copy through torch.save, so a kept state is not aliased to live tensors."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@dataclass
class _Run:
    """What a run is made of: settings, data, model, optimiser, sampler, mixture."""

    cfg: TrainConfig
    rt: Runtime
    device: torch.device
    corpus: Any
    mixture: MixtureClient
    model: torch.nn.Module  # as prepared (DDP-wrapped under data parallelism)
    raw_model: torch.nn.Module
    forward_model: torch.nn.Module  # compiled or not
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    sampler: MixtureSampler
    total_steps: int
    micro: int  # sequences per micro-batch on this rank
    natural: np.ndarray
    entropy: list[float | None]
    stats: torch.Tensor  # [sums of K, counts of K], reused every step
    eval_schedule: MixturePolicy | None = None  # a policy's own evaluation requests

    @property
    def k(self) -> int:
        return int(self.corpus.num_domains)

    @property
    def seq_len(self) -> int:
        return int(self.corpus.seq_len)

    @property
    def lead(self) -> bool:
        """Rank 0: sends events to the mixture and saves checkpoints."""
        return self.rt.rank == 0


def _build(
    cfg: TrainConfig, corpus: Any | None, mixture: MixtureClient | None, rt: Runtime
) -> _Run:
    tr = cfg.training
    device = rt.device or torch.device("cpu")
    corpus = corpus if corpus is not None else load_corpus(cfg.data.source, **cfg.data.options)
    mixture = mixture if mixture is not None else make_local_mixture(cfg, corpus)
    seq_len = int(corpus.seq_len)
    total_steps = run_total_steps(cfg, corpus)
    if tr.batch_size % rt.world_size:
        raise ValueError(
            f"training.batch_size={tr.batch_size} is not divisible by the {rt.world_size} workers"
        )
    local_batch = tr.batch_size // rt.world_size
    if local_batch % tr.grad_accum:
        raise ValueError(
            f"training.grad_accum={tr.grad_accum} does not divide the per-worker batch "
            f"{local_batch}"
        )
    torch.manual_seed(cfg.seed)
    m = cfg.model
    raw_model = build_model(
        m.preset, int(corpus.vocab_size), seq_len, m.overrides, m.pretrained
    ).to(device)
    model = rt.prepare_model(raw_model) if rt.prepare_model else raw_model
    optimizer = torch.optim.AdamW(
        _decay_groups(raw_model, tr.weight_decay),
        lr=tr.lr,
        betas=(float(tr.betas[0]), float(tr.betas[1])),
        fused=device_plan(device, tr.precision).fused_adamw,
        foreach=None if device_plan(device, tr.precision).fused_adamw else True,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(tr.warmup_steps(total_steps), total_steps, tr.min_lr_ratio)
    )
    sampler = MixtureSampler(
        corpus,
        tr.batch_size,
        seed=cfg.seed,
        rank=rt.rank,
        world_size=rt.world_size,
        mode=tr.sampler_mode(policy_class(cfg.policy).needs.exact_batches),
    )
    return _Run(
        cfg=cfg,
        rt=rt,
        device=device,
        corpus=corpus,
        mixture=mixture,
        model=model,
        raw_model=raw_model,
        # Static shapes: a graph per batch shape (train, eval, last eval batch), so the kernels
        # do not depend on the order shapes were seen in, and a resumed run computes the same.
        forward_model=torch.compile(model, dynamic=False) if tr.compile else model,
        optimizer=optimizer,
        scheduler=scheduler,
        sampler=sampler,
        total_steps=total_steps,
        micro=local_batch // tr.grad_accum,
        natural=np.asarray(corpus.natural_weights(), dtype=np.float64),
        entropy=list(corpus.entropy_rate),
        stats=torch.zeros(2 * int(corpus.num_domains), dtype=torch.float64, device=device),
        eval_schedule=_eval_schedule(cfg, corpus),
    )


def _eval_schedule(cfg: TrainConfig, corpus: Any) -> MixturePolicy | None:
    """A copy of the trial's policy that answers ``wants_eval_at`` on this rank, for a policy
    that schedules its own held-out evaluations. The schedule is a pure function of the options
    and the step, so every rank (and the mixture actor) agrees on it without a round trip."""
    cls = policy_class(cfg.policy)
    if cls.wants_eval_at is MixturePolicy.wants_eval_at:
        return None
    policy = make_policy(cfg.policy, corpus.num_domains, **resolve_policy_options(cfg, corpus))
    return policy if policy.wants_eval_feedback else None


def _eval_tokens_per_evaluation(run: _Run) -> int:
    """Held-out tokens one evaluation reads (for version-1 checkpoints, which lack the sum)."""
    cap = run.cfg.training.eval_sequences
    seqs = sum(len(v) if cap is None else min(len(v), int(cap)) for v in run.corpus.val)
    return int(seqs) * run.seq_len


def _start(run: _Run) -> TrainState:
    """A fresh state (and a fresh mixture), or the one of ``run.rt.resume_state``."""
    rt, saved = run.rt, run.rt.resume_state
    st = TrainState()
    if saved is not None:
        run.raw_model.load_state_dict(saved["model"])
        run.optimizer.load_state_dict(saved["optimizer"])
        run.scheduler.load_state_dict(saved["scheduler"])
        run.sampler.load_state_dict(saved["sampler"])
        torch.set_rng_state(saved["torch_rng"])
        if device_plan(run.device, "auto").cuda_rng and saved.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(saved["cuda_rng"], run.device)  # dropout draws on the GPU
        if run.lead and saved.get("mixture") is not None:
            run.mixture.load_state_dict(saved["mixture"])
        st.step = st.last_checkpoint = int(saved["step"]) + 1
        st.tokens_seen = int(saved["tokens_seen"])
        st.eval_round, st.timing = int(saved["eval_round"]), dict(saved["timing"])
        if "eval_tokens" in saved:
            st.eval_tokens = int(saved["eval_tokens"])
        else:  # version 1: the step-0 evaluation and one per round, all alike
            st.eval_tokens = (st.eval_round + 1) * _eval_tokens_per_evaluation(run)
        log.info("resumed at step %d", st.step)
    elif run.lead:
        run.mixture.reset()  # a restart without a checkpoint replays from step 0 into a fresh policy
    if rt.world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank 0 has restored the mixture before anyone asks it for weights
    return st


def _regular_eval(run: _Run, done: int) -> bool:
    """Whether ``done`` steps end an evaluation round (every ``eval_interval`` and the end):
    these evaluations are reported, and checkpoints ride on them."""
    return done % run.cfg.training.eval_interval == 0 or done == run.total_steps


def _eval_after(run: _Run, done: int) -> bool:
    """Whether an evaluation is made when ``done`` steps are done: a regular one, or one the
    policy asked for (``wants_eval_at``; its cost counts in the trial's ``eval_tokens``)."""
    if _regular_eval(run, done):
        return True
    return run.eval_schedule is not None and bool(run.eval_schedule.wants_eval_at(done))


def _train_step(run: _Run, st: TrainState) -> None:
    """Run step ``st.step`` and hand its statistics to the mixture."""
    cfg, rt, k, step = run.cfg, run.rt, run.k, st.step
    tr = cfg.training
    if rt.on_step is not None:
        rt.on_step(step)
    t0 = time.perf_counter()
    weights = run.mixture.weights(step)
    t1 = time.perf_counter()
    ids, doms = run.sampler.sample(weights)
    ids_t = torch.as_tensor(ids, dtype=torch.long).to(run.device, non_blocking=True)
    doms_t = torch.as_tensor(doms, dtype=torch.long).to(run.device, non_blocking=True)
    t2 = time.perf_counter()
    stats = run.stats
    stats.zero_()
    for m in range(tr.grad_accum):
        sl = slice(m * run.micro, (m + 1) * run.micro)
        last = m == tr.grad_accum - 1
        sync = (
            run.model.no_sync()
            if (not last and hasattr(run.model, "no_sync"))  # DDP's, not a mixture probe
            else contextlib.nullcontext()
        )
        with sync, _autocast(run.device, tr.precision):
            seq_loss = sequence_losses(run.forward_model, ids_t[sl])
            (seq_loss.mean() / tr.grad_accum).backward()
        stats[:k].index_add_(0, doms_t[sl], seq_loss.detach().double())
        stats[k:].index_add_(0, doms_t[sl], torch.ones_like(seq_loss, dtype=torch.float64))
    _all_reduce(stats, rt.world_size)
    if tr.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), tr.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    host = stats.cpu().numpy().copy()  # waits for the device; copied: stats is reused
    t3 = time.perf_counter()
    sums, counts = host[:k], host[k:]
    if not np.isfinite(sums).all():
        raise FloatingPointError(f"non-finite training loss at step {step}")
    st.train_loss = float(sums.sum() / max(counts.sum(), 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    if run.lead:
        run.mixture.observe(step, counts, means, eval_follows=_eval_after(run, step + 1))
    else:
        run.mixture.prefetch(step + 1)
    st.tokens_seen += tr.batch_size * run.seq_len
    t4 = time.perf_counter()
    timing = st.timing
    timing["policy_wait"] += (t1 - t0) + (t4 - t3)
    timing["data"] += t2 - t1
    timing["compute"] += t3 - t2
    timing["wall"] += t4 - t0
    st.step = step + 1


def _evaluate(run: _Run, st: TrainState, replay: bool = False) -> dict[str, Any]:
    """Evaluate every domain after ``st.step`` steps; feed the losses to the mixture (rank 0)
    and keep them as ``st.last_eval``. ``replay``: an evaluation the state already counts."""
    rt = run.rt
    t = time.perf_counter()
    val, seqs = evaluate_counts(
        run.forward_model, run.corpus, run.cfg, run.device, rt.rank, rt.world_size
    )
    st.timing["eval"] += time.perf_counter() - t
    if not replay:
        st.eval_tokens += int(seqs.sum()) * run.seq_len
    if run.lead:
        t = time.perf_counter()
        run.mixture.observe_eval(st.step, val)
        st.timing["policy_wait"] += time.perf_counter() - t
        run.mixture.record_eval(
            {
                "step": st.step,
                "tokens_seen": st.tokens_seen,
                "val_loss": val.tolist(),
                "entropy_rate": run.entropy,
                "train_wall_s": st.timing["wall"],  # training time so far: rates between evals
            }
        )
    st.last_eval = {"val_loss": val, **aggregate(val, run.natural, run.entropy)}
    return st.last_eval


def _checkpoint(run: _Run, st: TrainState) -> dict[str, Any]:
    """The training state after ``st.step`` steps (rank 0)."""
    device = run.device
    return {
        "version": CHECKPOINT_VERSION,
        "step": st.step - 1,  # the last step done
        "tokens_seen": st.tokens_seen,
        "eval_tokens": st.eval_tokens,
        "eval_round": st.eval_round,
        "timing": dict(st.timing),
        "model": run.raw_model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "sampler": run.sampler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device_plan(device, "auto").cuda_rng else None,
        "mixture": run.mixture.state_dict(),
        "config": run.cfg.to_dict(),
    }


def _report(run: _Run, st: TrainState, with_checkpoint: bool) -> None:
    """Report the last evaluation's metrics (a new round), with a checkpoint if asked."""
    rt = run.rt
    if rt.report is None:
        return
    metrics: dict[str, Any] = {
        "step": st.step,
        "tokens_seen": st.tokens_seen,
        "eval_tokens": st.eval_tokens,
        "train_loss": st.train_loss,
        "tokens_per_second": st.tokens_seen / max(st.timing["wall"], 1e-9),
    }
    ev = st.last_eval
    if ev is not None:
        st.eval_round += 1
        metrics["eval_round"] = st.eval_round
        metrics.update({m: v for m, v in ev.items() if m != "val_loss" and v is not None})
        metrics.update(
            {f"val_loss/{d}": float(v) for d, v in zip(run.corpus.domains, ev["val_loss"])}
        )
    ckpt = _checkpoint(run, st) if with_checkpoint and run.lead else None
    rt.report(metrics, ckpt)


def _summary(run: _Run, st: TrainState) -> dict[str, Any]:
    assert st.last_eval is not None
    timing, domains = st.timing, list(run.corpus.domains)
    tokens_per_s = st.tokens_seen / max(timing["wall"], 1e-9)
    peak = peak_flops(run.device)
    mfu = None
    if peak and run.device.type == "cuda":  # model FLOPs utilisation of the training steps
        per_token = flops_per_token(run.raw_model, run.seq_len)
        mfu = tokens_per_s * per_token / (peak * run.rt.world_size)
    return {
        **{m: v for m, v in st.last_eval.items() if m != "val_loss"},
        "val_loss": dict(zip(domains, map(float, st.last_eval["val_loss"]))),
        "mfu": mfu,
        "steps": run.total_steps,
        "tokens_seen": st.tokens_seen,
        "eval_tokens": st.eval_tokens,
        "wall_seconds": timing["wall"] + timing["eval"],
        "tokens_per_second": st.tokens_seen / max(timing["wall"], 1e-9),
        "time_data_s": timing["data"],
        "time_compute_s": timing["compute"],
        "time_policy_wait_s": timing["policy_wait"],
        "time_eval_s": timing["eval"],
        "time_startup_s": timing["startup"],
        "final_train_loss": st.train_loss,
        "passes": dict(zip(domains, map(float, run.sampler.passes))),
        "domains": domains,
        "seq_len": run.seq_len,
    }


def run_training(
    cfg: TrainConfig,
    corpus: Any | None = None,
    mixture: MixtureClient | None = None,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """Train one trial and return its record: per-step history, evaluations and a summary.

    ``mixture`` is any :class:`~ado_ray.train.mixture.MixtureClient`
    (:class:`~ado_ray.train.mixture.LocalMixture` by default, the Ray actor's client under Ray
    Train). Only rank 0 sends observations and checkpoints.
    """
    rt = runtime or Runtime()
    entered = time.perf_counter() if rt.started_at is None else rt.started_at
    run = _build(cfg, corpus, mixture, rt)
    st = _start(run)
    resumed_after_end = st.step >= run.total_steps
    eval_before = st.timing["eval"]
    if st.step == 0:
        _evaluate(run, st)  # the untrained model: every curve starts from the same point
    # This start's cost before its first step (the loop's imports under Ray Train, the corpus,
    # the model, a restore), less the step-0 evaluation that time_eval_s counts. Checkpoints
    # carry it, so a restarted run adds each start's.
    this_start = time.perf_counter() - entered - (st.timing["eval"] - eval_before)
    st.timing["startup"] = st.timing.get("startup", 0.0) + this_start
    run.model.train()
    interval = cfg.training.checkpoint_interval
    while st.step < run.total_steps:
        _train_step(run, st)
        if _eval_after(run, st.step):
            _evaluate(run, st)
        if _regular_eval(run, st.step):
            # Checkpoints ride on evaluation rounds, so every report carries the study's metric
            # and Tune's schedulers see one result per round (a report costs seconds: extra
            # evaluations a policy asks for are not reported).
            ckpt = st.step == run.total_steps or st.step - st.last_checkpoint >= interval
            if ckpt:
                st.last_checkpoint = st.step
            _report(run, st, ckpt)
    if resumed_after_end:
        _evaluate(run, st, replay=True)  # nothing ran; the checkpoint counted this evaluation
    summary = _summary(run, st)
    if run.lead:
        run.mixture.set_summary(summary)
    record = run.mixture.export() if run.lead else {"summary": summary}
    record["domains"] = list(run.corpus.domains)
    return record
