"""Training: task -> engine -> clipping -> optimiser, for R runs at once on the engine's run axis.

``train_batch(specs)`` trains runs that share every array shape (``RunConfig.shape_key``) in one
loop: each run has its own weights, data stream, learning rate and clip threshold, all stacked on
a leading axis R. One training step is one fresh batch of sequences per run:

    x, d ~ task (each run's own Generator)          (R, T, B, I), (R, T, B, O)
    res = bptt(params, x, d, ...)                    loss (R,), grads, step norms (R, T)
    g, norm, clipped = clip_grads(res.grads, mode, threshold)     (mode "step": inside bptt)
    params, state = optim.step(params, g, state, lr=lr, ...)

With ``tbptt: N`` (the lecture's "update the weights every N steps"; Williams & Peng's BPTT(N; N),
Sutskever's k1 = k2 = N) a sequence is walked in chunks of N steps: the state (s, and c for the
LSTM) is carried across chunks, each chunk back-propagates only within itself, and the weights are
updated after every chunk that carries a loss term. One training step is still one batch of
sequences, so it makes ceil(T / N) updates when the loss is at every step.

Reproducibility: a run's randomness comes only from ``numpy.random.SeedSequence(seed)`` spawned
into three streams (initial weights, training data, held-out data). Nothing depends on which other
runs share the batch, so a run trains identically alone or in any batch. Runs with the same seed
at different grid points share their random draws (common random numbers), so differences between
grid points come from the swept setting, not from luck.

Steps are numbered from 0: the record at step 0 is the gradient at initialisation (before any
update); ``steps: 0`` measures gradient flow without training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from rnnlab.analysis.lyapunov_stats import analyse, lyapunov_table
from rnnlab.engine import (
    active_engine,
    bptt,
    clip_grads,
    forward,
    global_norm,
    init_params,
    optim,
    spectral_stats,
)
from rnnlab.tasks import ACCURACY_CRITERIA, EXPLODED_FACTOR, TASK_OPTIONS, make_task
from rnnlab.timing import timed

#: Bytes of held-out arrays evaluated at once (``Trainer.evaluate`` takes that many runs at a time).
EVAL_BUDGET = 64 << 20
#: Bytes of held-out data (x and d of every run of a batch) a batch keeps from its first
#: evaluation to its last, instead of drawing the same sequences again at every evaluation. Half
#: of EVAL_BUDGET: ``Trainer.evaluate`` counts the kept data in EVAL_BUDGET (it takes fewer runs
#: at a time while it keeps them), so evaluation never holds more than it did without them.
HELD_OUT_BUDGET = EVAL_BUDGET // 2


def eval_run_bytes(T: int, n: int, G: int, H: int, O: int, I: int, itemsize: int) -> int:
    """Bytes one run's held-out evaluation holds: ``forward`` on n sequences of T steps keeps
    states and pre-activations (T+1, n, G and H), outputs and logits, the data x and d."""
    return itemsize * (T + 1) * n * (2 * G + 2 * H + 3 * O + I)


@dataclass
class BatchResult:
    """What one trained batch hands to the store: one row per run and two long tables."""

    runs: list[dict]
    grad_norms: pd.DataFrame      # run_id, step, t, ds, dWs, dWx, dc
    metrics: pd.DataFrame         # run_id, step, loss, accuracy, grad_norm(_clipped), clipped
    lyapunov: pd.DataFrame | None = None   # run_id, step, kind, index, value (train.lyapunov)


def build_task(cfg, seq_len: int | None = None):
    """The Task of a run config (task options left None take the task's defaults), at
    ``seq_len`` instead of the config's when given (a jittered training length)."""
    tc = cfg.task
    opts = {k: getattr(tc, k) for k in TASK_OPTIONS[tc.name]
            if getattr(tc, k, None) is not None}
    return make_task(tc.name, tc.seq_len if seq_len is None else seq_len, **opts)


def run_streams(seed: int):
    """Three independent Generators (init, data, eval) from the run's seed via SeedSequence."""
    init_ss, data_ss, eval_ss = np.random.SeedSequence(seed).spawn(3)
    return (np.random.default_rng(init_ss), np.random.default_rng(data_ss),
            np.random.default_rng(eval_ss))


def eval_seed(seed: int) -> np.random.SeedSequence:
    """The seed of a run's held-out set: every evaluation draws the same sequences from it."""
    return np.random.SeedSequence(seed).spawn(3)[2]


def _stack(dicts):
    return {k: np.stack([p[k] for p in dicts]) for k in dicts[0]}


@timed("data")
def _sample(task, rngs, batch, dtype, compiled):
    """One batch per run from each run's own Generator: x (R, T, B, I), d (R, T, B, O); with
    ``compiled``, by the compiled draws where they cover the task (the same numbers)."""
    return task.sample_runs(rngs, batch, dtype=dtype, compiled=compiled)


class Trainer:
    """The state of R runs being trained together (weights, optimiser state, streams, flags).

    ``blas_threads`` (default 1) limits BLAS while training: the engine's products are small, and
    a multi-threaded OpenBLAS spins waiting for its threads, which was measured 10-100x slower on
    them than one thread when the cores are busy (a 24x960 @ 960x96 product: 77 ms with two
    threads on a loaded 2-core machine, 0.65 ms with one). Use worker processes for parallelism.
    """

    def __init__(self, specs, blas_threads: int = 1):
        self.blas_threads = blas_threads
        self.specs = list(specs)
        cfg = self.specs[0].config
        self.cfg = cfg
        self.task = build_task(cfg)
        self._tasks = {self.task.length: self.task}   # the task at each jittered length
        self.current_step = 0
        m, tr = cfg.model, cfg.train
        self.dtype = np.dtype(m.dtype)
        self.compiled = active_engine() == "compiled"     # the data too: compiled draws
        self.R = R = len(self.specs)
        # 1, or 1 / (T + 2 copy_len) for copy scored as Arjovsky et al.: the engine's loss is a
        # sum over steps, and its gradient is linear in it, so scaling the loss, the gradients
        # and the per-step errors after the engine gives exactly the per-step average's numbers
        self.loss_scale = self.task.loss_scale
        self.kw = dict(cell=m.cell, activation=m.activation,
                       output=m.output or self.task.output, loss=self.task.loss,
                       loss_at=tr.loss_at or self.task.loss_at)
        streams = [run_streams(s.seed) for s in self.specs]
        self.data_rngs = [s[1] for s in streams]
        self.eval_seeds = [eval_seed(s.seed) for s in self.specs]
        self._held_out = None             # (x, d) of every run, see held_out()
        self.params = _stack([
            init_params(s[0], cell=m.cell, input_size=self.task.input_size, hidden=m.hidden,
                        output_size=self.task.output_size, init=sp.config.model.init,
                        scale=sp.config.model.weight_scale, bias=m.bias,
                        forget_bias=sp.config.model.forget_bias, dtype=self.dtype)
            for s, sp in zip(streams, self.specs, strict=True)])
        self.state = optim.init_state(tr.optimizer, self.params)
        self.norm_keys = ("ds", "dWs", "dWx") + (("dc",) if m.cell == "lstm" else ())

        def per_run(get):
            return np.array([get(sp.config.train) for sp in self.specs], dtype=np.float64)
        self.hyper = dict(lr=per_run(lambda t: t.lr), momentum=per_run(lambda t: t.momentum),
                          beta1=per_run(lambda t: t.beta1), beta2=per_run(lambda t: t.beta2),
                          eps=per_run(lambda t: t.eps), nesterov=tr.nesterov)
        self.clip_mode = tr.clip.mode
        self.threshold = per_run(
            lambda t: np.inf if t.clip.threshold is None or t.clip.mode == "none"
            else t.clip.threshold)
        self.active = np.ones(R, dtype=bool)
        self.diverged_step = np.full(R, -1)
        self.clip_count = np.zeros(R)
        self.update_count = np.zeros(R)

    # ------------------------------------------------------------------------------ one step
    def step(self, update: bool, log: bool = True):
        """One batch of sequences per run; returns the logged quantities of this step.

        Without ``log`` the engine skips the per-step norms and the outputs (the step's
        ``norms`` and ``accuracy`` are None, and so is ``grad_norm_clipped``, whose norm of the
        clipped gradients is not taken): loss, gradients and the update are the same."""
        task = self.task_at(self.current_step)
        x, d = _sample(task, self.data_rngs, self.cfg.task.batch, self.dtype,
                       self.compiled)
        params = self.params                # the weights of this step (before its updates)
        T = x.shape[1]
        N = self.cfg.train.tbptt or T
        step_clip = self.threshold if self.clip_mode == "step" else None
        w_loss = self.loss_scale
        if step_clip is not None and w_loss != 1.0:
            step_clip = step_clip / w_loss      # the threshold is in the scaled loss's units
        s = c = None
        losses = np.zeros(self.R)
        parts, outs = [], []
        gnorm = np.zeros(self.R)
        gnorm_after = np.zeros(self.R)
        clipped = np.zeros(self.R, dtype=bool)
        for a in range(0, T, N):
            w = slice(a, min(a + N, T))
            has_loss = self.kw["loss_at"] == "all" or w.stop == T
            if has_loss:
                res = bptt(self.params, x[:, w], d[:, w], **self.kw, clip_step=step_clip,
                           s0=s, c0=c, norms=log, outputs=log)
            else:   # no loss term in this window: forward only, its errors dE/ds_t are zero
                res = forward(self.params, x[:, w], d[:, w], **self.kw, s0=s, c0=c,
                              outputs=log)
            s = res.states[:, -1]
            c = None if res.cells is None else res.cells[:, -1]
            s, c = self._carry(s, c)
            if has_loss and w_loss != 1.0:
                res = _scaled(res, w_loss)
            if log:                         # the outputs and norms exist only when logging
                outs.append(res.outputs)
                parts.append(res.step_norms if has_loss else dict.fromkeys(
                    self.norm_keys, np.zeros((self.R, w.stop - w.start), dtype=self.dtype)))
            if not has_loss:
                continue
            losses += res.loss
            grads = res.grads
            if self.clip_mode in ("norm", "value"):      # clip_grads returns the norm before
                grads, norm, hit = clip_grads(grads, self.clip_mode, self.threshold,
                                              batched=True)
                # the norm after clipping is only logged; with no run clipped the gradients are
                # the same numbers, and so is their norm
                after = global_norm(grads, batched=True) if log and hit.any() else norm
            else:
                norm = global_norm(grads, batched=True)
                hit = ((res.extra["clip_factors"] < 1).any(axis=(1, 2))
                       if step_clip is not None else np.zeros(self.R, dtype=bool))
                after = norm
            gnorm, gnorm_after = np.maximum(gnorm, norm), np.maximum(gnorm_after, after)
            clipped |= hit
            finite = np.isfinite(res.loss) & np.isfinite(norm)
            self._diverge(~finite)
            if update:
                self._update(grads, hit)
        norms = acc = None
        if log:
            norms = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
            acc = task.accuracy(np.concatenate(outs, axis=1), d)
        return dict(loss=losses, accuracy=acc, grad_norm=gnorm,
                    grad_norm_clipped=gnorm_after if log else None,
                    clipped=clipped, norms=norms,
                    lyapunov=self._lyapunov(x, params) if log else None)

    def task_at(self, step: int):
        """The task of training step ``step``: the run's task, or with a length jitter the same
        task at that step's length (``Task.training_length``). Held-out data keep ``self.task``."""
        T = self.task.training_length(step)
        if T not in self._tasks:
            tc = self.cfg.task
            self._tasks[T] = build_task(self.cfg, seq_len=tc.seq_len + T - self.task.length)
        return self._tasks[T]

    def _lyapunov(self, x, params):
        """The Lyapunov analysis of this step's batch with the weights its gradient was taken at
        (``train.lyapunov``; None when off). Changes no training number."""
        opt = self.cfg.train.lyapunov
        if not opt.enabled:
            return None
        H = self.cfg.model.hidden
        D = 2 * H if self.kw["cell"] == "lstm" else H
        m = min(D, opt.exponents or min(H, 8))
        k = min(x.shape[1], opt.window or x.shape[1])
        return analyse(params, x, cell=self.kw["cell"], activation=self.kw["activation"],
                       exponents=m, window=k, budget=EVAL_BUDGET)

    def _carry(self, s, c):
        """The state handed to the next window: a run whose state overflowed diverges, and its
        state is reset to zero so that the other runs of the batch go on."""
        if np.isfinite(s).all() and (c is None or np.isfinite(c).all()):
            return s, c                               # the usual case: no run to look at
        bad = ~np.isfinite(s).reshape(self.R, -1).all(axis=1)
        if c is not None:
            bad |= ~np.isfinite(c).reshape(self.R, -1).all(axis=1)
        if bad.any():
            self._diverge(bad)
            s = np.where(_bc(bad, s), 0, s)
            c = None if c is None else np.where(_bc(bad, c), 0, c)
        return s, c

    def _update(self, grads, hit):
        tr = self.cfg.train
        new, state = optim.step(tr.optimizer, self.params, grads, self.state,
                                active=self.active, **self.hyper)
        if not all(np.isfinite(v).all() for v in new.values()):    # which runs, only if any
            ok = np.all([np.isfinite(v).reshape(self.R, -1).all(axis=1) for v in new.values()],
                        axis=0)
            self._diverge(~ok)
        keep = self.active                            # runs that just diverged keep finite weights
        if keep.all():                                # np.where would keep every new value
            self.params, self.state = new, state
        else:
            self.params = {k: np.where(_bc(keep, v), v, self.params[k]) for k, v in new.items()}
            self.state = _select_state(keep, state, self.state)
        self.clip_count += hit & keep
        self.update_count += keep

    def _diverge(self, bad):
        new = bad & self.active
        if new.any():
            self.diverged_step[new] = self.current_step
            self.active &= ~new

    # ------------------------------------------------------------------------------ the loop
    def run(self, progress=None) -> BatchResult:
        """Train ``steps`` updates, logging every ``log_every`` steps and at the last one."""
        tr = self.cfg.train
        t0 = time.perf_counter()
        rho0, sigma0 = spectral_stats(self.params["Ws"])
        logs = []
        solved_at = np.full(self.R, -1)
        with np.errstate(all="ignore"), threadpool_limits(limits=self.blas_threads,
                                                         user_api="blas"):
            for step in range(tr.steps + 1):
                self.current_step = step
                was_active = self.active.copy()
                log = step % tr.log_every == 0 or step == tr.steps
                rec = self.step(update=step < tr.steps, log=log)
                if log:
                    rec["step"], rec["mask"] = step, was_active
                    logs.append(rec)
                    self._first_solved(rec, step, solved_at)
                if progress is not None:
                    progress(step)
                if not self.active.any():
                    break
            final_loss, final_acc, final_criteria = self.evaluate(criteria=True)
        rho1, sigma1 = spectral_stats(self.params["Ws"])
        wall = (time.perf_counter() - t0) / self.R
        return self._package(logs, final_loss, final_acc, solved_at, (rho0, sigma0, rho1, sigma1),
                             wall, final_criteria)

    def _first_solved(self, rec, step: int, solved_at: np.ndarray) -> None:
        """Record ``step`` for the active runs not yet solved that meet the task's criterion on
        this step's training batch *and* on the held-out set (evaluated only for those), so
        ``steps_to_solve`` always rests on held-out data."""
        acc = rec["accuracy"]
        hit = np.array([self.task.solved(float(lv), None if acc is None else float(acc[r]))
                        for r, lv in enumerate(rec["loss"])], dtype=bool)
        todo = np.flatnonzero((solved_at < 0) & hit & self.active)
        if todo.size == 0:
            return
        loss, held = self.evaluate(todo)
        for j, r in enumerate(todo):
            if self.task.solved(float(loss[j]), None if held is None else float(held[j])):
                solved_at[r] = step

    @timed("evaluate")
    def evaluate(self, runs=None, criteria: bool = False):
        """Loss and accuracy on each run's held-out set (``task.eval_batch`` sequences drawn
        from the run's eval seed: the same sequences at every call, kept between calls when
        they fit, see ``held_out``), for the runs at the indices ``runs`` (default all), in
        that order. With ``criteria`` a third item: the task's published accuracy criteria on
        the same outputs (``Task.criteria``: name -> array over the runs; empty for tasks
        without them).

        Evaluated a few runs at a time, so that the held-out batch's arrays (often far larger
        than a training step's), the kept held-out data included, stay under ``EVAL_BUDGET``
        bytes whatever the batch's size. Each run draws its own held-out data and ``forward``
        is batch-invariant, so the numbers are the same bit for bit as one call over all
        runs."""
        idx = np.arange(self.R) if runs is None else np.asarray(runs, dtype=np.int64)
        n = self.cfg.task.eval_batch
        kept = self.held_out()
        per_run = eval_run_bytes(self.task.length, n, self.params["Ws"].shape[-1],
                                 self.params["Wy"].shape[-2], self.task.output_size,
                                 self.task.input_size, self.dtype.itemsize)
        room = EVAL_BUDGET - (0 if kept is None else kept[0].nbytes + kept[1].nbytes)
        chunk = int(max(1, min(len(idx), room // per_run)))
        loss, acc = np.empty(len(idx)), np.empty(len(idx))
        extra: dict[str, np.ndarray] = {}
        for a in range(0, len(idx), chunk):
            r = idx[a:a + chunk]
            if kept is not None:      # all runs in order: a slice is a view, no copy
                rows = slice(a, a + chunk) if runs is None else r
                x, d = kept[0][rows], kept[1][rows]
            else:
                rngs = [np.random.default_rng(self.eval_seeds[i]) for i in r]
                x, d = _sample(self.task, rngs, n, self.dtype, self.compiled)
            res = forward({k: v[r] for k, v in self.params.items()}, x, d, **self.kw)
            loss[a:a + chunk] = res.loss * self.loss_scale
            got = self.task.accuracy(res.outputs, d)
            if got is None:
                acc = None
            elif acc is not None:
                acc[a:a + chunk] = got
            if criteria:
                for name, v in self.task.criteria(res.outputs, d).items():
                    extra.setdefault(name, np.empty(len(idx)))[a:a + chunk] = v
        return (loss, acc, extra) if criteria else (loss, acc)

    def held_out(self):
        """Every run's held-out data (x (R, T, n, I), d (R, T, n, O)), drawn at the first call
        and kept, when they fit in ``HELD_OUT_BUDGET`` bytes; else None (each evaluation draws
        them again). Drawn from fresh Generators on the runs' eval seeds, so kept or drawn
        again they are the same sequences."""
        n = self.cfg.task.eval_batch
        size = self.R * self.task.length * n * (self.task.input_size + self.task.output_size)
        if size * 8 > HELD_OUT_BUDGET:                # drawn in float64 (samplers), then cast
            return None
        if self._held_out is None:
            rngs = [np.random.default_rng(seed) for seed in self.eval_seeds]
            self._held_out = _sample(self.task, rngs, n, self.dtype, self.compiled)
        return self._held_out

    @timed("package")
    def _package(self, logs, final_loss, final_acc, solved_at, spectra, wall,
                 criteria=None) -> BatchResult:
        rho0, sigma0, rho1, sigma1 = spectra
        rows = []
        for r, sp in enumerate(self.specs):
            div = self.diverged_step[r] >= 0
            acc = None if final_acc is None else float(final_acc[r])
            loss = float(final_loss[r])
            ok = not div and np.isfinite(loss)
            exploded = ok and loss > EXPLODED_FACTOR * self.task.baseline["loss"]
            solved = bool(ok and not exploded and self.task.solved(loss, acc))
            rows.append({
                "run_id": sp.run_id, **sp.swept, "seed": sp.seed,
                "status": "exploded" if exploded else "ok" if ok else "diverged", "error": None,
                "diverged_step": int(self.diverged_step[r]) if div else None,
                "final_loss": loss if np.isfinite(loss) else None, "accuracy": acc,
                # the task's published criteria on the same held-out outputs (adding), else null
                **{name: (float(criteria[name][r]) if criteria and name in criteria else None)
                   for name in ACCURACY_CRITERIA},
                "solved": solved,
                # set even when the run lost it later: "solved within B steps" is
                # steps_to_solve <= B, as if training had stopped there (rnnlab.analysis.limits)
                "steps_to_solve": int(solved_at[r]) if solved_at[r] >= 0 else None,
                "rho_start": float(rho0[r]), "sigma_start": float(sigma0[r]),
                "rho_end": float(rho1[r]), "sigma_end": float(sigma1[r]),
                "decay_bound": self._bound(sigma0[r]),
                "decay_bound_end": None if div else self._bound(sigma1[r]),
                "last_step": int(self.diverged_step[r]) if div else self.cfg.train.steps,
                "clip_rate": float(self.clip_count[r] / max(self.update_count[r], 1)),
                "wall_time": wall, "seq_len": self.cfg.task.seq_len,
            })
        lyap = [lyapunov_table([sp.run_id for sp in self.specs], rec["step"], rec["mask"],
                               rec["lyapunov"]) for rec in logs if rec["lyapunov"] is not None]
        return BatchResult(rows, self._grad_table(logs), self._metric_table(logs),
                           pd.concat(lyap, ignore_index=True) if lyap else None)

    def _bound(self, sigma: float) -> float | None:
        """log10(gamma * sigma_max(Ws)): Pascanu et al.'s per-step bound on the decay of
        ||dE/ds_t|| (gamma = max |phi'|: 1 for tanh, relu, identity; 1/4 for sigmoid).
        None for the LSTM, whose error flows through the gated cell instead, and where the loss
        is not at the last step only (errors from several loss steps add up)."""
        if self.cfg.model.cell != "rnn" or not sigma > 0 or self.kw["loss_at"] != "last":
            return None
        gamma = 0.25 if self.cfg.model.activation == "sigmoid" else 1.0
        return float(np.round(np.log10(gamma * sigma), 12))      # log10(1 + 4e-16) -> 0

    def _grad_table(self, logs) -> pd.DataFrame:
        ids = np.array([sp.run_id for sp in self.specs], dtype=object)
        cols = {"run_id": [], "step": [], "t": [], "ds": [], "dWs": [], "dWx": [], "dc": []}
        for rec in logs:
            m = rec["mask"]
            n = rec["norms"]
            T = n["ds"].shape[1]
            k = int(m.sum())
            cols["run_id"].append(np.repeat(ids[m], T))
            cols["step"].append(np.full(k * T, rec["step"]))
            cols["t"].append(np.tile(np.arange(1, T + 1), k))
            for key in ("ds", "dWs", "dWx", "dc"):
                v = n[key][m] if key in n else np.full((k, T), np.nan)
                cols[key].append(v.astype(np.float64).ravel())
        return pd.DataFrame({k: np.concatenate(v) if v else [] for k, v in cols.items()})

    def _metric_table(self, logs) -> pd.DataFrame:
        ids = np.array([sp.run_id for sp in self.specs], dtype=object)
        frames = []
        for rec in logs:
            m = rec["mask"]
            acc = rec["accuracy"]
            frames.append(pd.DataFrame({
                "run_id": ids[m], "step": rec["step"],
                "loss": rec["loss"][m].astype(np.float64),
                "accuracy": np.full(m.sum(), np.nan) if acc is None else acc[m],
                "grad_norm": rec["grad_norm"][m], "grad_norm_clipped": rec["grad_norm_clipped"][m],
                "clipped": rec["clipped"][m]}))
        return pd.concat(frames, ignore_index=True)


def _scaled(res, w: float):
    """The engine's result for the loss times ``w``: loss, gradients and per-step errors scaled
    (all are linear in the loss); states and outputs untouched."""
    from dataclasses import replace

    grads = {k: v * w for k, v in res.grads.items()} if res.grads is not None else None
    norms = ({k: v * w for k, v in res.step_norms.items()} if res.step_norms is not None
             else None)
    return replace(res, loss=res.loss * w, grads=grads, step_norms=norms)


def _bc(mask, v):
    return mask.reshape((-1,) + (1,) * (v.ndim - 1))


def _select_state(keep, new, old):
    """Optimiser state: the new one for runs in ``keep``, the old one elsewhere (nested dicts)."""
    if isinstance(new, dict):
        return {k: _select_state(keep, new[k], old[k]) for k in new}
    new, old = np.asarray(new), np.asarray(old)
    return np.where(_bc(keep, new), new, old) if new.ndim else new


@timed("training")
def train_batch(specs, progress=None) -> BatchResult:
    """Train runs that share shapes together; see the module docstring."""
    return Trainer(specs).run(progress=progress)
