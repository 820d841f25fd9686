"""The GPT-2 training loop with a mixture policy in the loop. Plain Python: no Ray here.

One function, :func:`run_training`, runs a whole trial on one process, or on one rank of a DDP
group (the Ray Train shell in :mod:`ado_ray.distributed.trainer` supplies the rank, the device,
the DDP wrapper and the checkpoint hook). Each step:

1. ask the mixture for the step's weights (policy wait);
2. draw the global batch with the :class:`~ado_ray.data.MixtureSampler`, keep this rank's shard;
3. forward/backward with per-sequence losses (no reduction), so each domain's loss sum and
   sequence count come out of the same pass; under DDP they are all-reduced across ranks;
4. step the optimiser; hand the all-reduced per-domain statistics to the mixture (rank 0).

Every ``eval_interval`` steps and at the end, every domain's held-out set is evaluated.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ado_ray.data import MixtureSampler, load_corpus
from ado_ray.policies import make_policy
from ado_ray.train.config import TrainConfig
from ado_ray.train.metrics import aggregate
from ado_ray.train.mixture import LocalMixture, MixtureController
from ado_ray.train.model import build_model

log = logging.getLogger(__name__)

ReportFn = Callable[[dict[str, Any], "dict[str, Any] | None"], None]


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
    extra: dict[str, Any] = field(default_factory=dict)


def policy_options_for(cfg: TrainConfig, corpus: Any) -> dict[str, Any]:
    """The policy's options, completed from the corpus: natural prior, sequence length."""
    options = dict(cfg.policy_options)
    if (
        cfg.policy in ("natural", "ado")
        and "prior" not in options
        and "token_counts" not in options
    ):
        options["token_counts"] = np.asarray(corpus.token_counts(), dtype=np.float64).tolist()
    if cfg.policy == "ado":
        options.setdefault("seq_len", int(corpus.seq_len))
    return options


def make_local_mixture(cfg: TrainConfig, corpus: Any) -> LocalMixture:
    policy = make_policy(cfg.policy, corpus.num_domains, **policy_options_for(cfg, corpus))
    return LocalMixture(MixtureController(policy, lag=cfg.mixture_lag))


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


def _autocast(device: torch.device, precision: str):
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    corpus: Any,
    cfg: TrainConfig,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> np.ndarray:
    """Every domain's mean held-out loss (nats/token); sequences are sharded across ranks."""
    k = corpus.num_domains
    stats = torch.zeros(2 * k, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    for d in range(k):
        val = corpus.val[d]
        n = len(val) if cfg.eval_sequences is None else min(len(val), int(cfg.eval_sequences))
        mine = np.arange(rank, n, world_size)
        for start in range(0, len(mine), cfg.eval_batch_size):
            idx = mine[start : start + cfg.eval_batch_size]
            batch = torch.as_tensor(np.asarray(val[idx], dtype=np.int64), device=device)
            with _autocast(device, cfg.precision):
                losses = sequence_losses(model, batch)
            stats[d] += losses.double().sum()
            stats[k + d] += len(idx)
    model.train(was_training)
    _all_reduce(stats, world_size)
    stats = stats.cpu().numpy()
    return stats[:k] / np.maximum(stats[k:], 1)


def serialise_state(state: dict[str, Any]) -> dict[str, Any]:
    """A deep copy through torch.save, so a kept state is not aliased to live tensors."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def run_training(
    cfg: TrainConfig,
    corpus: Any | None = None,
    mixture: Any | None = None,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """Train one trial and return its record: per-step history, evaluations and a summary.

    ``mixture`` is any mixture client (:class:`~ado_ray.train.mixture.LocalMixture` by default,
    the Ray actor's client under Ray Train). Only rank 0 sends observations and checkpoints.
    """
    rt = runtime or Runtime()
    device = rt.device or torch.device("cpu")
    corpus = corpus if corpus is not None else load_corpus(cfg.data_source, **cfg.data_options)
    mixture = mixture if mixture is not None else make_local_mixture(cfg, corpus)
    k, seq_len = corpus.num_domains, int(corpus.seq_len)
    total_sequences = int(sum(len(t) for t in corpus.train))
    total_steps = cfg.total_steps(seq_len, total_sequences)
    if cfg.batch_size % rt.world_size:
        raise ValueError(
            f"training.batch_size={cfg.batch_size} is not divisible by the {rt.world_size} workers"
        )
    local_batch = cfg.batch_size // rt.world_size
    if local_batch % cfg.grad_accum:
        raise ValueError(
            f"training.grad_accum={cfg.grad_accum} does not divide the per-worker batch "
            f"{local_batch}"
        )
    micro = local_batch // cfg.grad_accum
    natural = np.asarray(corpus.natural_weights(), dtype=np.float64)
    entropy = list(corpus.entropy_rate)

    torch.manual_seed(cfg.seed)
    model = build_model(
        cfg.model_preset, int(corpus.vocab_size), seq_len, cfg.model_overrides, cfg.pretrained
    ).to(device)
    raw_model = model
    model = rt.prepare_model(model) if rt.prepare_model else model
    optimizer = torch.optim.AdamW(
        _decay_groups(raw_model, cfg.weight_decay),
        lr=cfg.lr,
        betas=cfg.betas,
        fused=device.type == "cuda",
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.warmup_steps(total_steps), total_steps, cfg.min_lr_ratio)
    )
    sampler = MixtureSampler(
        corpus,
        cfg.batch_size,
        seed=cfg.seed,
        rank=rt.rank,
        world_size=rt.world_size,
        mode=cfg.sampler,
    )
    forward_model = torch.compile(model) if cfg.compile else model

    start, tokens_seen, eval_round = 0, 0, 0
    timing = {"data": 0.0, "compute": 0.0, "policy_wait": 0.0, "eval": 0.0, "wall": 0.0}
    state = rt.resume_state
    if state is not None:
        raw_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)  # dropout draws on the GPU
        if rt.rank == 0 and state.get("mixture") is not None:
            mixture.load_state_dict(state["mixture"])
        start, tokens_seen = int(state["step"]) + 1, int(state["tokens_seen"])
        eval_round, timing = int(state["eval_round"]), dict(state["timing"])
        log.info("resumed at step %d", start)
    elif rt.rank == 0 and hasattr(mixture, "reset"):
        mixture.reset()  # a restart without a checkpoint replays from step 0 into a fresh policy
    if rt.world_size > 1 and dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank 0 has restored the mixture before anyone asks it for weights

    def do_eval(step_done: int) -> dict[str, Any]:
        t = time.perf_counter()
        val = evaluate(forward_model, corpus, cfg, device, rt.rank, rt.world_size)
        timing["eval"] += time.perf_counter() - t
        metrics = aggregate(val, natural, entropy)
        if rt.rank == 0:
            mixture.record_eval(
                {
                    "step": step_done,
                    "tokens_seen": tokens_seen,
                    "val_loss": val.tolist(),
                    "entropy_rate": entropy,
                }
            )
        return {"val_loss": val, **metrics}

    def report(step_done: int, ev: dict[str, Any], with_state: bool, train_loss: float):
        nonlocal eval_round
        if rt.report is None:
            return
        metrics: dict[str, Any] = {
            "step": step_done,
            "tokens_seen": tokens_seen,
            "train_loss": train_loss,
            "tokens_per_second": tokens_seen / max(timing["wall"], 1e-9),
        }
        if ev is not None:
            eval_round += 1
            metrics["eval_round"] = eval_round
            metrics.update({m: v for m, v in ev.items() if m != "val_loss" and v is not None})
            metrics.update(
                {f"val_loss/{d}": float(v) for d, v in zip(corpus.domains, ev["val_loss"])}
            )
        ckpt = None
        if with_state and rt.rank == 0:
            ckpt = {
                "step": step_done - 1,
                "tokens_seen": tokens_seen,
                "eval_round": eval_round,
                "timing": dict(timing),
                "model": raw_model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "sampler": sampler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "mixture": mixture.state_dict(),
                "config": cfg.to_dict(),
            }
        rt.report(metrics, ckpt)

    if start == 0:
        do_eval(0)  # the untrained model: every curve starts from the same point
    model.train()
    last_train = float("nan")
    last_eval: dict[str, Any] | None = None
    last_ckpt = start
    stats = torch.zeros(2 * k, dtype=torch.float64, device=device)
    for step in range(start, total_steps):
        if rt.on_step is not None:
            rt.on_step(step)
        t0 = time.perf_counter()
        weights = mixture.weights(step)
        t1 = time.perf_counter()
        ids, doms = sampler.sample(weights)
        ids_t = torch.as_tensor(ids, dtype=torch.long).to(device, non_blocking=True)
        doms_t = torch.as_tensor(doms, dtype=torch.long).to(device, non_blocking=True)
        t2 = time.perf_counter()
        stats.zero_()
        for m in range(cfg.grad_accum):
            sl = slice(m * micro, (m + 1) * micro)
            last = m == cfg.grad_accum - 1
            sync = (
                model.no_sync()
                if (not last and hasattr(model, "no_sync"))
                else contextlib.nullcontext()
            )
            with sync, _autocast(device, cfg.precision):
                seq_loss = sequence_losses(forward_model, ids_t[sl])
                (seq_loss.mean() / cfg.grad_accum).backward()
            stats[:k].index_add_(0, doms_t[sl], seq_loss.detach().double())
            stats[k:].index_add_(0, doms_t[sl], torch.ones_like(seq_loss, dtype=torch.float64))
        _all_reduce(stats, rt.world_size)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        host = stats.cpu().numpy().copy()  # waits for the device; copied: stats is reused
        t3 = time.perf_counter()
        sums, counts = host[:k], host[k:]
        if not np.isfinite(sums).all():
            raise FloatingPointError(f"non-finite training loss at step {step}")
        last_train = float(sums.sum() / max(counts.sum(), 1))
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        if rt.rank == 0:
            mixture.observe(step, counts, means)
        elif hasattr(mixture, "prefetch"):
            mixture.prefetch(step + 1)
        tokens_seen += cfg.batch_size * seq_len
        t4 = time.perf_counter()
        timing["policy_wait"] += (t1 - t0) + (t4 - t3)
        timing["data"] += t2 - t1
        timing["compute"] += t3 - t2
        timing["wall"] += t4 - t0
        done = step + 1
        is_last = done == total_steps
        if done % cfg.eval_interval == 0 or is_last:
            last_eval = do_eval(done)
            # Checkpoints ride on evaluations, so every report carries the study's metric and
            # Tune's schedulers see one result per evaluation round.
            ckpt = is_last or done - last_ckpt >= cfg.checkpoint_interval
            last_ckpt = done if ckpt else last_ckpt
            report(done, last_eval, ckpt, last_train)

    if last_eval is None or start >= total_steps:
        last_eval = do_eval(total_steps)  # resumed after the last step: nothing ran
    final = last_eval["val_loss"]
    summary = {
        **{m: v for m, v in last_eval.items() if m != "val_loss"},
        "val_loss": dict(zip(corpus.domains, map(float, final))),
        "steps": total_steps,
        "tokens_seen": tokens_seen,
        "wall_seconds": timing["wall"] + timing["eval"],
        "tokens_per_second": tokens_seen / max(timing["wall"], 1e-9),
        "time_data_s": timing["data"],
        "time_compute_s": timing["compute"],
        "time_policy_wait_s": timing["policy_wait"],
        "time_eval_s": timing["eval"],
        "final_train_loss": last_train,
        "passes": dict(zip(corpus.domains, map(float, sampler.passes))),
        "domains": list(corpus.domains),
        "seq_len": seq_len,
    }
    if rt.rank == 0:
        mixture.set_summary(summary)
    record = mixture.export() if rt.rank == 0 else {"summary": summary}
    record["domains"] = list(corpus.domains)
    return record
