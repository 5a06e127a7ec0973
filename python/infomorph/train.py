"""The one training loop: per-layer goals (or cross-entropy for the baseline, or a model's own
update step), per-epoch evaluation, results.json, checkpoints that resume exactly, and plots.

Output directory (its files: rundir.py; the configuration: config.py):
- ``results.json``: config, final ``test_accuracy``/``val_accuracy``, ``history`` (one entry per
  epoch: epoch, val/test/train accuracy, seconds, threads, mean goal and mean atoms per layer), run info;
- ``checkpoint.pt``: model, optimizer, RNG states and history (``resume=True`` continues);
- ``checkpoints/epoch-N.pt``: the model after the epochs in ``keep_checkpoints`` (for
  ``inspect --complexity`` over training);
- ``accuracy.png``, ``atoms.png`` when matplotlib is installed.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from ._engine import retune_threads, threads_note
from ._plots import plot_results
from ._progress import progress
from .config import TrainConfig, standardized
from .data import Splits, load_dataset
from .errors import TrainingInterrupted, UserError
from .goals import gamma_names, resolve_goal
from .models import BackpropNet, build_model, read_out
from .optim import adam
from .rundir import (CHECKPOINT, RESULTS, Interrupt, RunLock, atomic_json, atomic_save, checkpoint_state, damaged,
                     load_checkpoint)


def _n_batches(n: int, batch_size: int) -> int:
    """ceil(n / batch_size), at least 1: the number of batches of nearly equal size (no tiny last
    batch: the goal's probability estimates and the inversion rule both use batch statistics)."""
    return max(1, -(-n // batch_size))


def batch_indices(n: int, batch_size: int, perm: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
    """The sample indices (``perm``, else 0..n-1) of each of :func:`_n_batches` batches."""
    idx = perm if perm is not None else torch.arange(n)
    return list(torch.tensor_split(idx, _n_batches(n, batch_size)))


def batch_views(batch_size: int, *tensors: torch.Tensor):
    """The batches of :func:`batch_indices` in sample order, as views of each tensor (no gathered
    copies): tuples (one slice per tensor)."""
    k = _n_batches(tensors[0].shape[0], batch_size)
    return zip(*(torch.tensor_split(t, k) for t in tensors))


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Accuracy without context, batch by batch (the inversion rule uses each batch's mean; a model
    whose predictions do not depend on the batch names its own ``eval_batch_size``)."""
    if x.shape[0] == 0:
        return float("nan")
    batch_size = getattr(model, "eval_batch_size", None) or batch_size
    correct = 0
    for xb, yb in batch_views(batch_size, x, y):
        correct += int((model.predict(xb) == yb).sum())
    return correct / x.shape[0]


def build_from_config(cfg: TrainConfig, in_features: int, n_classes: int):
    """The model a config describes (goals from the resolved vectors)."""
    if cfg.model == "corinfomax":
        from .corinfomax import CorInfoMaxNet, settings_for

        return CorInfoMaxNet(in_features, cfg.hidden, n_classes, **settings_for(cfg.dataset))
    if cfg.backprop:
        return build_model(cfg.setup, cfg.hidden, in_features, n_classes, backprop=True, lateral_k=cfg.lateral_k,
                           activation=cfg.activation, passes=cfg.passes, mask_seed=cfg.seed,
                           eval_context=cfg.eval_context, hidden_sources=cfg.hidden_sources, context=cfg.context,
                           loss=cfg.backprop_loss)
    return build_model(
        cfg.setup, cfg.hidden, in_features, n_classes, lateral_k=cfg.lateral_k,
        hidden_goal=cfg.hidden_gamma, output_goal=cfg.output_gamma, activation=cfg.activation,
        passes=cfg.passes, bins=cfg.bins, backend=cfg.backend, mask_seed=cfg.seed, eval_context=cfg.eval_context,
        hidden_sources=cfg.hidden_sources, context=cfg.context,
    )


def make_optimizer(model, cfg: TrainConfig):
    if getattr(model, "own_update", False):
        return None  # its own update rule (CorInfoMax)
    if isinstance(model, BackpropNet):
        groups = model.optimizer_groups({"lr": cfg.backprop_lr})
    else:
        groups = model.optimizer_groups(
            {"lr": cfg.hidden_lr, "weight_decay": cfg.hidden_weight_decay},
            {"lr": cfg.output_lr, "weight_decay": cfg.output_weight_decay},
        )
    # fused: one kernel per parameter (about 3.5x the for-loop step at 100 hidden neurons on the CPU),
    # without torch.optim's import of torch._dynamo (~1.5 s of every run's start: optim.py)
    return adam(groups)


def is_infomorphic(model) -> bool:
    return not isinstance(model, BackpropNet) and not getattr(model, "own_update", False)


def layer_names(model) -> List[str]:
    n = len(model.hidden)
    return [f"hidden{i + 1}" if n > 1 else "hidden" for i in range(n)] + ["output"]


def run_info(cfg: TrainConfig) -> Dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": cfg.device,
    }
    try:
        from ._engine import engine

        info["engine_backends"] = list(engine().available_backends())
    except Exception as e:  # noqa: BLE001 - informational only
        info["engine_backends"] = f"unavailable: {e}"
    return info


def train(
    cfg: TrainConfig,
    out_dir: str,
    resume: bool = False,
    log: Callable[[str], None] = print,
    show_progress: bool = True,
    data: Optional[Splits] = None,
    on_epoch: Optional[Callable[[Dict], None]] = None,
    plots: bool = True,
) -> Dict:
    """Train (or continue, with ``resume``) and return the results dict written to results.json.

    With ``resume`` the config stored in ``out_dir``'s checkpoint is used, except ``epochs`` (to
    extend a run; None keeps the stored number), ``device``, ``backend`` and ``data_dir`` which
    are taken from ``cfg``. ``on_epoch(entry)`` is called after each epoch is saved (the goal
    search reports validation accuracy there and may raise to stop the run); ``plots=False``
    skips the PNGs.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"--out: {out_dir!r} is a file, not a directory; name a directory for the run")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out: cannot create the directory {out_dir!r} ({e.strerror or e})") from None
    lock = RunLock(out_dir).acquire()
    try:
        return _train_locked(cfg, out_dir, resume, log, show_progress, data, on_epoch, plots)
    finally:
        lock.release()


def _train_locked(cfg: TrainConfig, out_dir: str, resume: bool, log: Callable[[str], None], show_progress: bool,
                  data: Optional[Splits], on_epoch: Optional[Callable[[Dict], None]], plots: bool) -> Dict:
    ckpt_path = os.path.join(out_dir, CHECKPOINT)
    state = None
    if resume:
        state = load_checkpoint(ckpt_path, out_dir)
        saved = TrainConfig.from_dict(state["config"])
        if cfg.epochs is not None:
            saved.epochs = cfg.epochs
        saved.device, saved.backend, saved.data_dir = cfg.device, cfg.backend, cfg.data_dir
        cfg = saved
    else:
        if cfg.epochs is None:
            cfg.epochs = 50 if cfg.model == "corinfomax" else 100  # CorInfoMax: the authors' 50
        if cfg.model == "infomorphic":
            goal = cfg.goal
            if cfg.hidden_sources != "FCL" and goal == "optimized":  # the bivariate layers' own optimized goal
                goal = f"optimized-{cfg.hidden_sources.lower()}"
            cfg.hidden_gamma = _goal(goal, len(cfg.hidden_sources), "hidden", "--goal")
            cfg.output_gamma = _goal(cfg.output_goal, 2, "output", "--output-goal")

    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, cfg.val_fraction, cfg.seed, cfg.limit_train, cfg.limit_test,
                            standardize=standardized(cfg))
    data = data.to(device)
    try:
        model = build_from_config(cfg, data.in_features, data.n_classes).to(device)
    except ValueError as e:  # a combination of options the models refuse (e.g. --setup 3 --backprop)
        raise UserError(str(e)) from None
    opt = make_optimizer(model, cfg)
    history: List[Dict] = []
    wall_before = 0.0
    partial = None
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            if opt is not None:
                opt.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise UserError(damaged(ckpt_path, out_dir, f"it does not fit the stored model: {str(e).splitlines()[0]}")) from None
        history = state["history"]
        wall_before = state.get("wall_seconds", 0.0)
        partial = state.get("partial")  # an epoch stopped by Ctrl-C: continue at its next batch
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
    if device.type == "cuda":
        for layer in model.layers:
            layer.validate = False  # no per-call synchronization; the epoch's loss is checked below
    names = layer_names(model)
    infomorphic = is_infomorphic(model)
    own_update = getattr(model, "own_update", False)
    n_train = data.x_train.shape[0]
    n_batches = _n_batches(n_train, cfg.batch_size)
    atom_names = [gamma_names(layer.n_sources) for layer in model.layers] if infomorphic else None
    t_start = time.perf_counter()
    start_epoch = len(history) + 1
    interrupt = Interrupt()
    if start_epoch > cfg.epochs:
        log(f"nothing to do: {len(history)} epochs done, --epochs {cfg.epochs}")

    note = threads_note()
    if note is not None and start_epoch <= cfg.epochs:
        log(note)  # --threads auto: the choice, once (each epoch records its count)
    interrupt.install()
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            if own_update:
                model.start_epoch(epoch)  # its learning-rate schedule
            perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
            # running sums stay on the device: no synchronization per batch
            goal_sum = torch.zeros(len(names), dtype=torch.float64, device=device)
            atom_sum = [0.0] * len(names)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            first = 0
            if partial is not None and partial["epoch"] == epoch:
                first = partial["next_batch"]
                goal_sum = partial["goal_sum"].to(device)
                atom_sum = [a.to(device) if isinstance(a, torch.Tensor) else a for a in partial["atom_sum"]]
                correct = partial["correct"].to(device)
                loss_sum = partial["loss_sum"].to(device)
                t0 -= partial["seconds"]
            partial = None
            batches = batch_indices(n_train, cfg.batch_size, perm.to(device))
            bar = progress(batches[first:], n_batches - first, f"epoch {epoch}/{cfg.epochs}", enabled=show_progress)
            for b, idx in enumerate(bar, start=first):
                retune_threads()  # --threads auto: the cores not busy elsewhere (a look at most once a second)
                if interrupt.requested:
                    atomic_save(dict(checkpoint_state(cfg, model, opt, history, device, wall_before + time.perf_counter() - t_start),
                                      partial={"epoch": epoch, "next_batch": b, "goal_sum": goal_sum.cpu(),
                                               "atom_sum": [a.cpu() if isinstance(a, torch.Tensor) else a for a in atom_sum],
                                               "correct": correct.cpu(), "loss_sum": loss_sum.cpu(),
                                               "seconds": time.perf_counter() - t0}), ckpt_path)
                    bar.close()
                    raise TrainingInterrupted(
                        f"interrupted in epoch {epoch} at batch {b}/{n_batches}; the checkpoint {ckpt_path} continues "
                        f"from there: python -m infomorph train --resume {out_dir}", out_dir)
                # index_select, not x[idx]: torch's advanced indexing takes ~8x longer for these rows
                x, y = torch.index_select(data.x_train, 0, idx), torch.index_select(data.y_train, 0, idx)
                onehot = F.one_hot(y, data.n_classes).to(x.dtype)
                if own_update:  # the model's own local update step (no gradients)
                    loss, theta = model.train_step(x, onehot)
                else:
                    if infomorphic:
                        goals, atoms, out = model.goals(x, onehot)
                        loss = model.loss(goals)
                        theta = out.theta.detach()
                    else:
                        logits = model.logits(x, onehot)
                        loss = model.loss_of_logits(logits, y)
                        theta = torch.sigmoid(logits.detach())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    loss_sum += loss.detach()
                    # training accuracy of this very pass: the hidden layers saw the label context
                    correct += (read_out(theta, model.invert_outputs).argmax(1) == y).sum()
                    if infomorphic:
                        goal_sum += torch.stack([g.detach().double().mean() for g in goals])
                        atom_sum = [s + a for s, a in zip(atom_sum, atoms)]
                if show_progress and (b + 1) % 10 == 0:
                    bar.set_postfix_str(f"loss {float(loss_sum) / (b + 1):.4f}")
            if not torch.isfinite(loss_sum):
                raise FloatingPointError(f"epoch {epoch}: the loss is not finite (training diverged)")
            train_seconds = time.perf_counter() - t0
            model.eval()
            # evaluation samples hidden outputs too, from a forked random state: what is evaluated
            # (the test set each epoch or only after the last) never changes how the model trains
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                # None without a validation split (--val-fraction 0)
                val_acc = evaluate(model, data.x_val, data.y_val, cfg.batch_size) if data.x_val.shape[0] else None
                test_acc = (evaluate(model, data.x_test, data.y_test, cfg.batch_size)
                            if cfg.test_every_epoch or epoch == cfg.epochs else None)
            seconds = time.perf_counter() - t0
            entry = {
                "epoch": epoch,
                "val_accuracy": val_acc,
                "test_accuracy": test_acc,
                "train_accuracy": int(correct) / n_train,
                "loss": float(loss_sum) / n_batches,
                "seconds": seconds,
                "train_seconds": train_seconds,
                "threads": torch.get_num_threads(),
            }
            if infomorphic:
                entry["goal"] = {nm: float(g) / n_batches for nm, g in zip(names, goal_sum.cpu().tolist())}
                entry["atoms"] = {
                    nm: {an: float(v) / n_batches for an, v in zip(anames, a.cpu().tolist())}
                    for nm, anames, a in zip(names, atom_names, atom_sum)
                }
            history.append(entry)
            log(
                f"epoch {epoch}/{cfg.epochs}: val {'-' if val_acc is None else f'{val_acc:.4f}'}  test {'-' if test_acc is None else f'{test_acc:.4f}'}  train {entry['train_accuracy']:.4f}"
                f"  ({seconds:.1f} s)"
            )
            wall = wall_before + time.perf_counter() - t_start
            atomic_save(checkpoint_state(cfg, model, opt, history, device, wall), ckpt_path)
            if epoch in cfg.keep_checkpoints:  # for inspect --complexity over training
                os.makedirs(os.path.join(out_dir, "checkpoints"), exist_ok=True)
                atomic_save({"config": dataclasses.asdict(cfg), "model": model.state_dict(), "epoch": epoch},
                             os.path.join(out_dir, "checkpoints", f"epoch-{epoch}.pt"))
            results = _results(cfg, history, wall, model)
            atomic_json(results, os.path.join(out_dir, RESULTS))
            if on_epoch is not None:
                on_epoch(entry)

    finally:
        interrupt.restore()

    wall = wall_before + time.perf_counter() - t_start
    results = _results(cfg, history, wall, model)
    atomic_json(results, os.path.join(out_dir, RESULTS))
    if plots:
        plot_results(results, out_dir, log)
    return results


def _goal(spec, n_sources: int, role: str, option: str) -> List[float]:
    try:
        return resolve_goal(spec, n_sources, role=role).tolist()
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        raise UserError(f"{option} {spec}: {e}") from None


def _results(cfg: TrainConfig, history: List[Dict], wall: float, model) -> Dict:
    last = history[-1] if history else {}
    res = {
        "config": dataclasses.asdict(cfg),
        "epochs_done": len(history),
        "test_accuracy": last.get("test_accuracy"),
        "val_accuracy": last.get("val_accuracy"),
        "wall_seconds": wall,
        "info": run_info(cfg),
        "history": history,
    }
    if is_infomorphic(model):
        res["info"]["engine_backend_used"] = sorted({l.last_backend for l in model.layers if l.last_backend})
        res["goals"] = {
            nm: dict(zip(gamma_names(layer.n_sources), layer.gamma.tolist()))
            for nm, layer in zip(layer_names(model), model.layers)
        }
    return res


