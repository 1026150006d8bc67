"""The trainer: one config → one run directory (weights, record, log), resumable and deterministic.

::

    from probe.train import train
    record = train("docs/examples/train_resnet.toml", out="trained_models/example")
    record["metrics"]            # {"psnr_id": 31.2, "psnr_ood": 24.9, "loss": 0.011, ...}

Each step's batch is a pure function of (config, seed, step) (see :class:`probe.data.paired.PairedStream`),
so a killed run resumes from its last saved state and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probe.device import autocast, grad_scaler, resolve_device, to_device
from probe.errors import ConfigError, TrainingError
from probe.fsutil import require_utf8
from probe.interrupt import deferred
from probe.progress import progress
from probe.provenance import provenance
from probe.train.config import TrainConfig
from probe.train.rundir import RunDir, owner
from probe.train.step import LossWindow, Prefetcher, step_setup, to_memory_format


def lr_factor(config: TrainConfig, step: int) -> float:
    """Learning-rate multiplier at ``step`` (a pure function, so resumed runs follow the same schedule)."""
    t = config.train
    if t.warmup and step < t.warmup:
        return (step + 1) / t.warmup
    if t.schedule == "constant":
        return 1.0
    progress_ = (step - t.warmup) / max(1, t.iterations - t.warmup)
    if t.schedule == "cosine":
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))
    return 0.5 ** sum(progress_ >= m for m in (0.5, 0.75))  # "step"


def evaluation_batches(config: TrainConfig) -> dict[str, Any]:
    """The fixed, seeded evaluation set of the config's splits (held-out backgrounds)."""
    from probe.data.paired import evaluation_info, evaluation_set

    return evaluation_set(**evaluation_info(config.to_dict()))


def validate_model(model: nn.Module, batches: dict[str, Any], device: torch.device,
                   batch_size: int = 16) -> dict[str, float]:
    """Mean PSNR (dB) of the model's output on each split (and of the untouched input, for reference).

    ``batches`` may live on the CPU or on ``device`` (the trainer moves its evaluation set there once); the
    PSNR is computed where the data lives, in float64."""
    from probe.device import prepared
    from probe.metrics import psnr

    out: dict[str, float] = {}
    with prepared(model):
        for split, batch in batches.items():
            scores = []
            for start in range(0, len(batch), batch_size):
                part = batch[start:start + batch_size]
                pred = model(part.degraded.to(device)).float().to(part.clean.device).clamp(0, 1)
                scores.append(psnr(pred, part.clean))
            out[f"psnr_{split}"] = float(torch.cat(scores).mean())
            out[f"psnr_input_{split}"] = float(psnr(batch.degraded, batch.clean).mean())
    return out


def train(config: TrainConfig | dict[str, Any] | str | Path, out: str | Path | None = None, *,
          device: str | None = None, overrides: list[str] | None = None, force: bool = False,
          show_progress: bool | None = None) -> dict[str, Any]:
    """Train one model and write its run directory; returns the final ``run.json`` record.

    A finished run (status ``done`` and intact weights) is returned as is unless ``force``; an unfinished
    one resumes from ``state.pt``. A different config in an existing run directory is refused.
    """
    from probe.data.paired import PairedStream
    from probe.models import build
    from probe.models.checkpoint import save_weights
    from probe.provenance import sha256_file

    if isinstance(config, (str, Path)):
        config = TrainConfig.from_toml(config, overrides)
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    if device is not None:
        config.device = device
    run = RunDir(require_utf8(out if out is not None else Path("trained_models") / config.name, "run directory"))
    dev = resolve_device(config.device)
    config_json = json.loads(config.to_json())
    config_cmp = {k: v for k, v in config_json.items() if k != "device"}

    previous: dict[str, Any] = {}
    if run.exists():
        previous = run.read()
        stored = {k: v for k, v in _with_defaults(previous.get("config") or {}).items() if k != "device"}
        if stored and stored != config_cmp:
            raise ConfigError(f"{run.path}: holds a run with a different config; choose another output "
                              f"directory or delete it")
        if previous.get("status") == "done" and not force and run.weights.is_file():
            if sha256_file(run.weights) == previous.get("weights_sha256"):
                return previous
        if force:
            run.clear_state()

    torch.manual_seed(config.seed)
    model = build(config.model.family, config.model.size, **config.model.kwargs).to(dev)
    if config.model.family == "external":  # several image outputs and no `output`: refuse, never pick one
        from probe.models.external import check_trainable_output

        check_trainable_output(model, config.data.patch)
    ema = copy.deepcopy(model).eval() if config.train.ema > 0 else None
    for p in ema.parameters() if ema is not None else []:
        p.requires_grad_(False)
    # fused on CUDA (one kernel for all parameters; same update to rounding), the default elsewhere
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, betas=(0.9, 0.99),
                                 fused=True if dev.type == "cuda" else None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config, s))
    stream = PairedStream(config.data.background, config.data.n_backgrounds, config.degradation,
                          patch=config.data.patch, batch=config.train.batch, seed=config.seed,
                          clean_fraction=config.data.clean_fraction,
                          background_options=config.data.background_options, device=dev,
                          **config.data.balance_options())

    setup, forward = step_setup(config, model, dev)
    scaler = grad_scaler(dev, setup.precision)
    start, history, wall_before = 0, [], 0.0
    state = None if force else run.load_state()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start = int(state["step"])
        history = list(previous.get("history") or [])
        wall_before = float(previous.get("wall_time_s") or 0.0)

    record: dict[str, Any] = {
        "status": "running", "name": config.name, "config": config_json, "axes": dict(config.axes),
        "model": {"family": config.model.family, "size": config.model.size, "kwargs": config.model.kwargs},
        "seed": config.seed, "device": str(dev), "step": setup.describe(), "owner": owner(), "history": history,
        "resumed_from": start,
        "provenance": provenance(), "error": None,
        # written once, read through probe.records.RunRecord: the data stream and the task
        "stream": stream.describe(), "task": getattr(stream.degradation, "decomposition", None),
    }
    run.path.mkdir(parents=True, exist_ok=True)
    run.write(record)
    run.log(f"# start step={start} device={dev} config={config.name}")

    eval_batches = to_device(evaluation_batches(config), dev)  # moved once
    loss_fn = nn.L1Loss() if config.train.loss == "l1" else nn.MSELoss()
    t0 = time.perf_counter()
    recent: list[float] = []
    every = config.train.log_every or 50
    losses = LossWindow(dev, every)
    model.train()
    bar = progress(total=config.train.iterations, initial=start, desc=config.name, enabled=show_progress)

    def flush() -> None:
        """Read the window's losses (one host sync); stop the run at the first non-finite one."""
        values, bad = losses.flush()
        recent.extend(values)
        if values:
            bar.set_postfix(loss=f"{values[-1]:.4f}", refresh=False)
        if bad is not None:
            bad, value = bad
            message = (f"{run.path}: non-finite loss ({value}) at step {bad}; run marked failed "
                       f"(lower train.lr or enable train.grad_clip)")
            run.log(f"step={bad} loss={value} FAILED")
            record.update(status="failed", error=message, failed_step=bad,
                          wall_time_s=wall_before + time.perf_counter() - t0)
            run.write(record)
            raise TrainingError(message)

    saved = [start if state is not None else 0]  # step of the state.pt on disk (where a rerun resumes)

    def checkpoint(done: int) -> None:
        saved[0] = done
        run.save_state({"step": done, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                        "scaler": scaler.state_dict() if scaler.is_enabled() else None})
        record.update(history=history, wall_time_s=wall_before + time.perf_counter() - t0)
        run.write(record)

    done = start
    try:
        with deferred() as stop:  # a signal ends the run at the end of its step, with the state saved
            batches = Prefetcher(stream, start, config.train.iterations, dev)
            for step, batch in enumerate(batches, start=start):
                degraded = to_memory_format(batch.degraded, setup.channels_last)
                with autocast(dev, setup.precision):
                    pred = forward(degraded)
                loss = loss_fn(pred.float(), batch.clean)
                losses.add(step, loss)
                if dev.type == "cpu":  # free on the CPU: stop before a non-finite step touches the weights
                    flush()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.train.grad_clip:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if ema is not None:
                    _ema_update(ema, model, config.train.ema)
                bar.update(1)
                done = step + 1
                boundary = done % every == 0 or done == config.train.iterations
                val_now = config.train.val_every and done % config.train.val_every == 0 \
                    and done < config.train.iterations
                ckpt_now = config.train.checkpoint_every and done % config.train.checkpoint_every == 0 \
                    and done < config.train.iterations
                if boundary or val_now or ckpt_now:
                    flush()
                if config.train.log_every and done % config.train.log_every == 0:
                    last = recent[-config.train.log_every:]
                    run.log(f"step={done} loss={sum(last) / len(last):.6f} lr={optimizer.param_groups[0]['lr']:.3e} "
                            f"elapsed_s={time.perf_counter() - t0:.4f}")  # after flush(): a host sync
                if val_now:
                    scores = validate_model(ema or model, eval_batches, dev)
                    history.append({"step": done, **scores})
                    run.log(f"validation {json.dumps(history[-1], sort_keys=True)}")
                if ckpt_now:
                    checkpoint(done)
                if stop.requested:  # at a step boundary: save, so a rerun loses nothing
                    flush()
                    checkpoint(done)
                    raise stop.interruption()
        flush()
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM or SIGHUP (probe.interrupt)
        record_interrupted(run, record, exc, done, saved[0], wall_before + time.perf_counter() - t0)
        raise
    finally:
        bar.close()

    final_model = ema or model
    scores = validate_model(final_model, eval_batches, dev)
    history.append({"step": config.train.iterations, **scores})
    window = recent[-max(1, config.train.log_every or 10):] or [float("nan")]
    metrics = {**scores, "loss": sum(window) / len(window)}
    sha = save_weights(final_model.cpu() if dev.type != "cpu" else final_model, run.weights)
    record.update(status="done", metrics=metrics, history=history, weights_sha256=sha,
                  wall_time_s=wall_before + time.perf_counter() - t0, finished=provenance()["time"])
    run.write(record)
    run.clear_state()
    run.log(f"# done {json.dumps(metrics, sort_keys=True)}")
    return record


def record_interrupted(run: RunDir, record: dict[str, Any], exc: BaseException, step: int, resume: int,
                       wall_time_s: float | None = None) -> None:
    """Write ``record`` as ``interrupted`` at ``step`` (what stopped it, and ``resume``: the step of the saved
    state a rerun starts from) and log it.

    Best effort: a record that cannot be written stays ``running`` with a dead owner, which reads as
    ``interrupted`` too (:meth:`probe.train.rundir.RunDir.status`)."""
    from probe.interrupt import describe

    record.update(status="interrupted", interrupted_step=int(step),
                  error=f"stopped by {describe(exc)} at step {step}; a rerun resumes from step {resume}")
    if wall_time_s is not None:
        record["wall_time_s"] = wall_time_s
    try:
        run.write(record)
        run.log(f"# interrupted step={step} by={describe(exc)} resume_from={resume}")
    except OSError:
        pass


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in model.parameters()], 1 - decay)
        for e, b in zip(ema.buffers(), model.buffers()):
            e.copy_(b)


def _with_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A recorded config with keys added since it was written filled by their defaults (so an older run
    resumes instead of being refused as "a different config")."""
    try:
        return json.loads(TrainConfig.from_dict(stored).to_json())
    except Exception:
        return stored
