"""The ``batched`` grid executor: many small models of one study trained at once in one process.

Cells whose networks have the same structure (family, size, options) and the same batch, patch, iteration
count, loss and precision form a group; a group's parameters are stacked (``torch.func.stack_module_state``)
and one ``vmap``-ped step computes every cell's loss and gradient in a single pass — convolutions become
grouped convolutions — so a grid of small models fills a GPU instead of waiting on Python in many worker
processes. Everything that differs between cells stays per cell: seed (initial weights), training data
(each cell's own :class:`~probe.data.paired.PairedStream`), learning rate and schedule, gradient clipping,
EMA decay. The optimiser is Adam (β = 0.9, 0.99, ε = 1e-8) applied elementwise with a per-cell learning
rate, the same update as ``torch.optim.Adam``; results equal training each cell alone to float tolerance.

::

    probe grid run analyses/derain_complexity.toml --executor batched [--workers 32] [--gpus 0,1]

    from probe.grid.runner import run_grid
    run_grid("analyses/derain_complexity.toml", executor="batched")

``--workers`` caps the cells per group (default 64); ``--gpus`` gives each GPU its own process and share of
the groups (:func:`probe.grid.executors.run_in_processes`: a killed process costs only its group; Ctrl-C or
SIGTERM stops every process and records its cells ``interrupted``). Limits: an interrupted group restarts
from step 0 (finished cells are never retrained); a cell whose loss turns non-finite is marked failed and the
rest of its group goes on.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

BETAS, EPS = (0.9, 0.99), 1e-8
MAX_GROUP = 64


def group_key(config: dict[str, Any]) -> str:
    """Cells with equal keys can share one vmapped step."""
    t = config["train"]
    return json.dumps({"model": config["model"], "batch": t["batch"], "patch": config["data"]["patch"],
                       "iterations": t["iterations"], "loss": t["loss"], "precision": t.get("precision"),
                       "ema": t["ema"] > 0, "device": config.get("device")}, sort_keys=True, default=str)


def plan_groups(todo: list[tuple[str, dict[str, Any], Any]], max_cells: int | None = None) -> list[list]:
    """Split the cells into groups of equal :func:`group_key`, at most ``max_cells`` each, in spec order."""
    size = max(1, int(max_cells or MAX_GROUP))
    by_key: dict[str, list] = {}
    for item in todo:
        by_key.setdefault(group_key(item[1]), []).append(item)
    return [cells[i:i + size] for cells in by_key.values() for i in range(0, len(cells), size)]


def run_batched(todo, workers, scheduler, device, threads, verbose, gpus: list[int] | None = None
                ) -> Iterator[dict[str, Any]]:
    """Executor entry point (see :func:`probe.grid.runner.run_grid`): yields one outcome per cell."""
    groups = plan_groups(list(todo), workers)
    if not groups:
        return
    if not gpus or len(gpus) == 1:
        dev = f"cuda:{gpus[0]}" if gpus else device
        for group in groups:
            yield from train_group(group, dev, threads, verbose)
        return
    from probe.grid.executors import death_cause, record_lost_cell, run_in_processes

    tasks = ((i, train_group, (group, f"cuda:{gpus[i % len(gpus)]}", threads, verbose))
             for i, group in enumerate(groups))
    for i, outcomes, exitcode, seconds in run_in_processes(tasks, len(gpus)):
        if isinstance(outcomes, list):
            yield from outcomes
            continue
        error = getattr(outcomes, "message", None) or death_cause(exitcode)  # raised, or the process died
        for _, _, path in groups[i]:
            yield record_lost_cell(path, error, seconds=seconds, exitcode=exitcode)


def train_group(group: list, device: str | None, threads: int = 1, verbose: bool = False) -> list[dict[str, Any]]:
    """Train the cells of one group together; never raises (a failure is recorded per cell)."""
    from probe.train.rundir import RunDir

    torch.set_num_threads(max(1, threads))
    t0 = time.perf_counter()
    try:
        return _train_group(group, device, verbose)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: the group's cells restart on a rerun
        from probe.grid.runner import mark_interrupted

        for _, _, path in group:
            mark_interrupted(RunDir(path), exc)
        raise
    except Exception as exc:  # one failing group must not stop the grid
        message = f"{type(exc).__name__}: {exc}"
        out = []
        for _, config, path in group:
            run = RunDir(path)
            try:
                record = run.read() if run.exists() else {"config": config}
                record.update(status="failed", error=message)
                run.path.mkdir(parents=True, exist_ok=True)
                run.write(record)
            except Exception:
                pass
            out.append({"path": str(path), "status": "failed", "error": message,
                        "seconds": time.perf_counter() - t0})
        return out


def _train_group(group: list, device: str | None, verbose: bool) -> list[dict[str, Any]]:
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    from probe.data.paired import PairedStream
    from probe.device import autocast, resolve_device, to_device
    from probe.models import build
    from probe.progress import progress
    from probe.provenance import provenance
    from probe.train.config import TrainConfig
    from probe.train.rundir import RunDir, owner
    from probe.train.step import resolve_precision
    from probe.train.trainer import evaluation_batches, lr_factor

    t0 = time.perf_counter()
    configs = [TrainConfig.from_dict(config) for _, config, _ in group]
    runs = [RunDir(path) for _, _, path in group]
    dev = resolve_device(device or configs[0].device)
    first = configs[0]
    precision = resolve_precision(first.train.precision, dev)
    models = []
    for config in configs:
        torch.manual_seed(config.seed)
        models.append(build(config.model.family, config.model.size, **config.model.kwargs).to(dev))
    streams = [PairedStream(c.data.background, c.data.n_backgrounds, c.degradation, patch=c.data.patch,
                            batch=c.train.batch, seed=c.seed, clean_fraction=c.data.clean_fraction,
                            background_options=c.data.background_options, device=dev,
                            **c.data.balance_options()) for c in configs]
    records = []
    for config, run in zip(configs, runs):
        run.clear_state()
        record = {"status": "running", "name": config.name, "config": json.loads(config.to_json()),
                  "axes": dict(config.axes), "seed": config.seed, "device": str(dev), "owner": owner(),
                  "model": {"family": config.model.family, "size": config.model.size,
                            "kwargs": config.model.kwargs},
                  "step": {"precision": precision, "channels_last": False, "compile": False,
                           "executor": "batched", "group_size": len(configs)},
                  "history": [], "resumed_from": 0, "provenance": provenance(), "error": None}
        run.path.mkdir(parents=True, exist_ok=True)
        run.write(record)
        run.log(f"# start step=0 device={dev} config={config.name} executor=batched cells={len(configs)}")
        records.append(record)

    params, buffers = stack_module_state(models)
    frozen = [k for k, p in models[0].named_parameters() if not p.requires_grad]  # e.g. a frozen prior
    buffers.update({k: params.pop(k).detach() for k in frozen})  # passed along, never differentiated
    params = {k: v.detach() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    loss_fn = nn.L1Loss() if first.train.loss == "l1" else nn.MSELoss()

    def loss_of(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(base, (p, b), (x,)).float(), y)

    step_fn = vmap(grad_and_value(loss_of))
    n = len(configs)

    def per_cell(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, device=dev, dtype=torch.float32)

    base_lr = [c.train.lr for c in configs]
    clip = per_cell([c.train.grad_clip for c in configs])
    clipping = bool((clip > 0).any())
    exp_avg = {k: torch.zeros_like(v) for k, v in params.items()}
    exp_avg_sq = {k: torch.zeros_like(v) for k, v in params.items()}
    ema = {k: v.clone() for k, v in params.items()} if first.train.ema > 0 else None
    ema_weight = per_cell([1 - c.train.ema for c in configs])
    evals = [to_device(evaluation_batches(c), dev) for c in configs]
    iterations, every = first.train.iterations, first.train.log_every or 50
    losses = torch.zeros(every, n, device=dev)
    recent: list[list[float]] = [[] for _ in range(n)]
    failed: dict[int, str] = {}
    bar = progress(total=iterations, desc=f"batched ×{n}", enabled=verbose if verbose else False)
    count = 0

    def flush(upto: int) -> None:
        nonlocal count
        if not count:
            return
        values = losses[:count].cpu().tolist()
        for row, vals in enumerate(values):
            step = upto - count + row
            for i, value in enumerate(vals):
                if i in failed:
                    continue
                if value != value or abs(value) == float("inf"):
                    failed[i] = (f"{runs[i].path}: non-finite loss ({value}) at step {step}; run marked failed "
                                 f"(lower train.lr or enable train.grad_clip)")
                    runs[i].log(f"step={step} loss={value} FAILED")
                    records[i].update(status="failed", error=failed[i], failed_step=step,
                                      wall_time_s=time.perf_counter() - t0)
                    runs[i].write(records[i])
                else:
                    recent[i].append(value)
        count = 0

    def unstacked(i: int, source: dict[str, torch.Tensor]) -> nn.Module:
        model = models[i]
        model.load_state_dict({**{k: v[i] for k, v in source.items()},
                               **{k: v[i] for k, v in buffers.items()}}, strict=False)
        return model

    try:
        for step in range(iterations):
            batches = [s.batch(step) for s in streams]
            x = torch.stack([b.degraded for b in batches])
            y = torch.stack([b.clean for b in batches])
            with autocast(dev, precision):
                grads, loss = step_fn(params, buffers, x, y)
            losses[count] = loss.detach().float()
            count += 1
            if clipping:
                norm = torch.stack([g.float().pow(2).flatten(1).sum(1) for g in grads.values()]).sum(0).sqrt()
                coef = torch.where(clip > 0, (clip / (norm + 1e-6)).clamp(max=1.0), torch.ones_like(norm))
                grads = {k: g * coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype) for k, g in grads.items()}
            lr = per_cell([lr0 * lr_factor(c, step) for lr0, c in zip(base_lr, configs)])
            t = step + 1
            step_size = lr / (1 - BETAS[0] ** t)
            bias2_sqrt = (1 - BETAS[1] ** t) ** 0.5
            for k, p in params.items():
                g = grads[k]
                exp_avg[k].lerp_(g, 1 - BETAS[0])
                exp_avg_sq[k].mul_(BETAS[1]).addcmul_(g, g, value=1 - BETAS[1])
                denom = (exp_avg_sq[k].sqrt() / bias2_sqrt).add_(EPS)
                shape = (-1, *([1] * (p.dim() - 1)))
                p.sub_(step_size.view(shape) * exp_avg[k] / denom)
                if ema is not None:
                    ema[k].lerp_(p, ema_weight.view(shape))
            bar.update(1)
            if count == every or t == iterations:
                flush(t)
                if first.train.log_every and t % first.train.log_every == 0:
                    for i in set(range(n)) - set(failed):
                        last = recent[i][-first.train.log_every:]
                        runs[i].log(f"step={t} loss={sum(last) / len(last):.6f} lr={float(lr[i]):.3e} "
                                    f"elapsed_s={time.perf_counter() - t0:.4f}")
    finally:
        bar.close()

    from probe.models.checkpoint import save_weights
    from probe.train.trainer import validate_model

    outcomes = []
    for i, (run, record) in enumerate(zip(runs, records)):
        if i in failed:
            outcomes.append({"path": str(run.path), "status": "failed", "error": failed[i],
                             "seconds": time.perf_counter() - t0})
            continue
        model = unstacked(i, ema if ema is not None else params)
        scores = validate_model(model, evals[i], dev)
        window = recent[i][-max(1, configs[i].train.log_every or 10):] or [float("nan")]
        metrics = {**scores, "loss": sum(window) / len(window)}
        sha = save_weights(model.cpu(), run.weights)
        record.update(status="done", metrics=metrics, history=[{"step": iterations, **scores}],
                      weights_sha256=sha, wall_time_s=time.perf_counter() - t0, finished=provenance()["time"])
        run.write(record)
        run.log(f"# done {json.dumps(metrics, sort_keys=True)}")
        outcomes.append({"path": str(run.path), "status": "done", "seconds": time.perf_counter() - t0})
    return outcomes
