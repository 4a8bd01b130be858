"""``DualLossBrain``: the one ``fit_batch`` every method of the project uses.

A method's Brain says only HOW its two losses are computed
(``compute_forward`` + ``compute_objectives`` returning a dict of named
losses) and WHICH rule combines their gradients (the ``surgery_rule``
hparam, a :class:`robust_brain.surgery.CombinationRule`). This class owns
everything else, keeping SpeechBrain's ``Brain.fit_batch`` contract:

* **one forward graph, one gradient per task**: each loss is differentiated
  with ``torch.autograd.grad`` over all trainable parameters
  (:func:`~robust_brain.surgery.task_gradients`);
* **gradient accumulation** (``--grad_accumulation_factor``): the per-task
  flat gradients are accumulated over micro-batches and combined ONCE, at
  the optimizer step (surgery on each micro-batch is a different
  algorithm);
* **DDP**: the forward always runs under ``no_sync`` (``autograd.grad``
  bypasses DDP's reducer anyway) and each task's accumulated gradient is
  all-reduced (mean) BEFORE the rule is applied, in one collective per step
  (:func:`~robust_brain.surgery.average_across_ranks`);
* **AMP** (``--precision fp32|bf16|fp16``): forward under SpeechBrain's
  ``training_ctx`` autocast; with fp16 on CUDA the losses are scaled by the
  GradScaler, and the surgery runs in UNSCALED space (the accumulated
  gradients are divided by the scale first, so norms, cosines, the SRPR
  state and Langevin noise see true values); the combined gradient is
  multiplied back by the scale and handed to the GradScaler, which
  unscales, detects inf/NaN, skips and backs off as usual;
* **non-finite handling**: ``check_loss_isfinite`` as in SpeechBrain
  (raises after ``--nonfinite_patience``); a non-finite task gradient
  SKIPS the step, counts it in ``skipped_steps`` and training goes on (the
  official D4AM code stalls forever after a NaN);
* **clipping of ALL trainable parameters** of each optimizer to
  ``--max_grad_norm`` (SpeechBrain clips only ``param_groups[0]``);
* **logging** per optimizer step: each task's loss and gradient norm, their
  cosine, the rule's coefficients and the pre-clip gradient norm, to
  ``surgery_log_file`` (CSV) and ``tensorboard_train_logger`` when those
  hparams exist, and as per-epoch means via :meth:`surgery_summary`.

Parameters reached by both losses and belonging to ``shared_modules``
(hparam; default: all) receive the rule's combined gradient; all other
parameters receive the plain sum, i.e. the gradient of the only loss that
reaches them (e.g. the ASR back-end in Gradient Remedy).
"""

import csv
import logging
import os

import speechbrain as sb
import torch
import torch.distributed as dist

from robust_brain.fileio import atomic_path
from robust_brain.surgery import Sum, average_across_ranks

logger = logging.getLogger(__name__)


class DualLossBrain(sb.Brain):
    """A ``speechbrain.Brain`` whose update combines two task gradients.

    Subclasses set :attr:`loss_names` to ``(main, aux)`` and make
    ``compute_objectives`` return a dict with those keys (either may be
    absent, e.g. D4AM's regression-only INIT stage: it then contributes a
    zero gradient and costs no backward pass). ``main`` is the downstream
    (recognition) loss, ``aux`` the signal-level one.

    Hparams read (all optional, top level):

    * ``surgery_rule``: a :class:`~robust_brain.surgery.CombinationRule`
      (default :class:`~robust_brain.surgery.Sum`); checkpointed when it
      has state;
    * ``shared_modules``: names in ``modules`` whose parameters receive the
      combined gradient (default: every trainable parameter);
    * ``module_lr``: ``{name: lr}``, learning rates of chosen modules (one
      parameter group each; the rest keeps ``opt_class``'s), e.g. a
      front-end trained jointly with a pretrained recogniser that needs a
      far smaller step;
    * ``surgery_log_file``: CSV path for the per-step statistics (on
      resume, rows past the recovered step are dropped: they are trained
      again);
    * ``tensorboard_train_logger``: a SpeechBrain ``TensorboardLogger``.

    Example
    -------
    >>> import torch
    >>> from robust_brain.surgery import D4AM
    >>> class Toy(DualLossBrain):
    ...     loss_names = ("cls", "reg")
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.net(batch[0])
    ...     def compute_objectives(self, out, batch, stage):
    ...         return {"cls": (out - batch[1]).pow(2).mean(),
    ...                 "reg": out.abs().mean()}
    >>> _ = torch.manual_seed(0)
    >>> brain = Toy(modules={"net": torch.nn.Linear(3, 1)},
    ...     opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
    ...     hparams={"surgery_rule": D4AM()})
    >>> data = [(torch.randn(4, 3), torch.randn(4, 1))] * 3
    >>> brain.fit(range(1), data)
    >>> sorted(brain.surgery_stats)  # doctest: +NORMALIZE_WHITESPACE
    ['alpha_gclb', 'alpha_srpr', 'cos', 'gnorm_cls', 'gnorm_reg',
     'grad_norm', 'loss_cls', 'loss_reg']
    >>> brain.optimizer_step, brain.skipped_steps
    (3, 0)
    """

    #: ``(main, aux)``: keys of the dict returned by ``compute_objectives``
    loss_names: tuple[str, str] = ("main", "aux")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if len(self.loss_names) != 2 or len(set(self.loss_names)) != 2:
            raise ValueError(
                f"{type(self).__name__}.loss_names must name two distinct "
                f"losses (main, aux), got {self.loss_names!r}"
            )
        rule = getattr(self.hparams, "surgery_rule", None)
        self.rule = (rule if rule is not None else Sum()).to(self.device)
        if self.checkpointer is not None and (
            len(self.rule.state_dict()) > 0
            and "surgery_rule" not in self.checkpointer.recoverables
        ):
            self.checkpointer.add_recoverable("surgery_rule", self.rule)
        self.skipped_steps = 0
        self.surgery_stats: dict[str, float] = {}
        self._epoch_sums: dict[str, float] = {}
        self._epoch_count = 0
        self._params: list[torch.nn.Parameter] | None = None
        # the training set and its batch count (make_dataloader)
        self._train_data = None
        self._n_train_batches = 1
        self._reset_accumulators()

    # ------------------------------------------------------------------
    # set-up
    # ------------------------------------------------------------------
    def on_fit_start(self):
        """SpeechBrain's set-up (DDP wrap, optimizers, recovery), then the
        flat-parameter layout used by the surgery and the frozen models on
        the device."""
        super().on_fit_start()
        self._setup_parameters()
        self._freeze_models()
        self._trim_surgery_log()

    def _trim_surgery_log(self):
        """Drop the log rows past the recovered optimizer step.

        A run killed after its last checkpoint has logged steps that the
        resumed run trains again; without this they would appear twice.
        """
        path = getattr(self.hparams, "surgery_log_file", None)
        if not path or not os.path.exists(path):
            return
        if not sb.utils.distributed.if_main_process():
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if len(rows) < 2:
            return
        header, body = rows[0], rows[1:]
        if "step" not in header:
            raise ValueError(
                f"surgery_log_file {path} has no 'step' column: not a log "
                "written by DualLossBrain"
            )
        col = header.index("step")

        def done(row):  # a row torn by a kill mid-write is dropped too
            try:
                return int(row[col]) <= self.optimizer_step
            except (ValueError, IndexError):
                return False

        keep = [r for r in body if done(r)]
        if len(keep) == len(body):
            return
        # written aside, then swapped in: a kill here loses no rows
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(keep)
        logger.info(
            "%s: dropped %d rows past the recovered step %d",
            path,
            len(body) - len(keep),
            self.optimizer_step,
        )

    def init_optimizers(self):
        """SpeechBrain's optimizer, with a parameter group per module of
        the ``module_lr`` hparam."""
        lrs = getattr(self.hparams, "module_lr", None) or {}
        # a module set to None keeps opt_class's rate (a yaml placeholder)
        lrs = {name: lr for name, lr in lrs.items() if lr is not None}
        if not lrs or self.opt_class is None:
            return super().init_optimizers()
        groups, seen = [], set()
        for name, lr in lrs.items():
            if name not in self.modules:
                raise ValueError(
                    f"module_lr names {name!r}, not a module "
                    f"(modules: {sorted(self.modules)})"
                )
            params = [
                p for p in self.modules[name].parameters() if p.requires_grad
            ]
            seen.update(id(p) for p in params)
            groups.append({"params": params, "lr": float(lr)})
        rest = [p for p in self.modules.parameters() if id(p) not in seen]
        if rest:
            groups.append({"params": rest})
        self.optimizer = self.opt_class(groups)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def frozen_models(self) -> list:
        """Frozen models a loss flows through (a proxy ASR, an encoder, a
        teacher), kept OUT of ``modules`` (no DDP wrap, no optimizer).

        The engine moves them to the device and freezes them (their own
        ``freeze()`` if they have one, else ``requires_grad_(False)`` +
        ``eval()``) at fit start and at EVERY stage start: ``fit`` puts
        modules back in train mode. Gradients still reach their input.
        Default: none.
        """
        return []

    def _freeze_models(self):
        for model in self.frozen_models():
            model.to(self.device)
            if callable(getattr(model, "freeze", None)):
                model.freeze()
            else:
                model.requires_grad_(False).eval()

    def on_stage_start(self, stage, epoch=None):
        """Re-freeze :meth:`frozen_models`; before a training epoch, let a
        training set with ``set_epoch(epoch)`` draw that epoch's crops or
        distortions (reproducible after a resume)."""
        self._freeze_models()
        if stage == sb.Stage.TRAIN and epoch is not None:
            if hasattr(self._train_data, "set_epoch"):
                self._train_data.set_epoch(epoch)

    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """SpeechBrain's loader with the dataset's own ``collate`` (when it
        has one); the training set and its batch count are kept."""
        if "collate_fn" not in loader_kwargs and hasattr(dataset, "collate"):
            loader_kwargs["collate_fn"] = dataset.collate
        loader = super().make_dataloader(
            dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
        )
        if stage == sb.Stage.TRAIN:
            self._train_data = dataset
            self._n_train_batches = max(len(loader), 1)
        return loader

    def _setup_parameters(self):
        """Order trainable parameters: shared ones first (the rule sees one
        contiguous slice), then the others."""
        if not self.optimizers_dict:
            raise ValueError(
                f"{type(self).__name__} needs an optimizer (opt_class or "
                "init_optimizers) to train"
            )
        params, seen = [], set()
        for opt in self.optimizers_dict.values():
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.requires_grad and id(p) not in seen:
                        seen.add(id(p))
                        params.append(p)
        shared_names = getattr(self.hparams, "shared_modules", None)
        if shared_names is None:
            shared_ids = seen
        else:
            missing = [n for n in shared_names if n not in self.modules]
            if missing:
                raise ValueError(
                    f"shared_modules names {missing} that are not in "
                    f"modules ({sorted(self.modules.keys())})"
                )
            shared_ids = {
                id(p)
                for n in shared_names
                for p in self.modules[n].parameters()
            }
        shared = [p for p in params if id(p) in shared_ids]
        if not shared:
            raise ValueError("no trainable parameter is shared")
        self._params = shared + [p for p in params if id(p) not in shared_ids]
        dtypes = {p.dtype for p in self._params}
        if len(dtypes) != 1:
            raise ValueError(
                "DualLossBrain needs one dtype for all trainable parameters "
                f"(the task gradients live in flat buffers), got {dtypes}"
            )
        self._numels = [p.numel() for p in self._params]
        self._n_shared_tensors = len(shared)
        self._n_shared = sum(p.numel() for p in shared)
        self._segments = torch.tensor(
            [p.numel() for p in shared], device=self.device
        )
        self._flat = None

    def _reset_accumulators(self):
        self._window_open = False
        self._acc_loss: dict[str, float] = {}
        self._acc_nonfinite = False

    def _open_window(self):
        """Zeroed flat buffers for the per-task gradients of one optimizer
        step: ``main`` over ALL trainable parameters (it also receives the
        auxiliary gradient of the non-shared ones, i.e. their plain sum),
        ``aux`` over the shared ones. The parameters' ``.grad`` are pointed
        at views of them, so autograd accumulates into them in place: no
        flattening, no copies, accumulation over micro-batches for free."""
        if self._flat is None:
            ref = self._params[0]
            main = torch.zeros(
                sum(self._numels), dtype=ref.dtype, device=ref.device
            )
            aux = torch.zeros(
                self._n_shared, dtype=ref.dtype, device=ref.device
            )
            k = self._n_shared_tensors
            self._flat = {"main": main, "aux": aux}
            self._views_main = [
                v.view_as(p)
                for v, p in zip(
                    main.split(self._numels), self._params, strict=False
                )
            ]
            self._views_aux = [
                v.view_as(p)
                for v, p in zip(
                    aux.split(self._numels[:k]), self._params[:k], strict=False
                )
            ]
        else:
            for buf in self._flat.values():
                buf.zero_()
        self._window_open = True

    def _point_grads(self, shared_to):
        """Shared parameters' ``.grad`` -> views of ``shared_to`` ('main' or
        'aux'); the others always -> views of ``main``."""
        views = self._views_aux if shared_to == "aux" else self._views_main
        k = self._n_shared_tensors
        for p, v in zip(self._params[:k], views[:k], strict=True):
            p.grad = v
        for p, v in zip(self._params[k:], self._views_main[k:], strict=True):
            p.grad = v

    def _backward_tasks(self, losses, scale, accum):
        """Backpropagate each present loss into its buffer (aux first)."""
        if not self._window_open:
            self._open_window()
        main, aux = self.loss_names
        order = [n for n in (aux, main) if n in losses]
        for i, name in enumerate(order):
            loss = losses[name].float() * (scale / accum)
            if not loss.requires_grad:
                continue
            self._point_grads("aux" if name == aux else "main")
            torch.autograd.backward(
                loss, inputs=self._params, retain_graph=i < len(order) - 1
            )

    # ------------------------------------------------------------------
    # training step
    # ------------------------------------------------------------------
    def _check_losses(self, losses):
        if isinstance(losses, torch.Tensor) or not isinstance(losses, dict):
            raise TypeError(
                f"{type(self).__name__}.compute_objectives must return a "
                f"dict of losses with keys from {self.loss_names} in the "
                f"TRAIN stage, got {type(losses).__name__}"
            )
        unknown = sorted(set(losses) - set(self.loss_names))
        if unknown or not losses:
            raise ValueError(
                f"{type(self).__name__}.compute_objectives returned losses "
                f"{sorted(losses)}; expected a non-empty subset of "
                f"{list(self.loss_names)}"
            )
        return losses

    def total_loss(self, losses):
        """The scalar reported as the train/valid loss: the plain sum.

        Arguments
        ---------
        losses : dict of str to tensor, or tensor

        Returns
        -------
        torch.Tensor
        """
        if isinstance(losses, torch.Tensor):
            return losses
        return sum(losses.values())

    def fit_batch(self, batch):
        """Forward once, one gradient per task, accumulate, combine, step.

        Linear rules (``Sum``, ``Weighted``) take SpeechBrain's own path: one
        backward of the weighted sum, DDP averaging inside ``backward()``,
        no overhead (per-task gradient norms are then not logged, unless
        the hparam ``log_task_gradients`` is True, which forces the general
        path). All other rules take the per-task path.

        Arguments
        ---------
        batch : any
            As produced by the train DataLoader.

        Returns
        -------
        torch.Tensor
            The detached total loss of this micro-batch.
        """
        if self._params is None:
            self._setup_parameters()
        accum = self.grad_accumulation_factor
        should_step = (self.step % accum) == 0
        self.on_fit_batch_start(batch, should_step)
        weights = self.rule.linear_weights
        if getattr(self.hparams, "log_task_gradients", False):
            weights = None

        # per-task path: autograd.grad never triggers DDP's reducer, so keep
        # it out of the way on every micro-batch and all-reduce per task at
        # the step; linear path: SpeechBrain's no_sync(not should_step)
        with self.no_sync(True if weights is None else not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                losses = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            losses = self._check_losses(losses)
            total = self.total_loss(losses)
            self.check_loss_isfinite(total)
            if not torch.isfinite(total):
                self._acc_nonfinite = True
            if weights is not None:
                w = dict(zip(self.loss_names, weights, strict=True))
                weighted = sum(w[n] * losses[n] for n in losses)
                self.scaler.scale(weighted / accum).backward()
            elif not self._acc_nonfinite:
                self._backward_tasks(losses, self._scale(), accum)
        for n, v in losses.items():
            self._acc_loss[n] = self._acc_loss.get(n, 0.0) + (
                v.detach().float() / accum
            )

        if should_step:
            if weights is None:
                self._surgery_step()
            else:
                self._linear_step()
        self.on_fit_batch_end(batch, outputs, total, should_step)
        return total.detach().cpu()

    def _linear_step(self):
        """Step after the weighted-sum backward (SpeechBrain's path), with
        the engine's skip-on-non-finite, clip-all and logging."""
        grads = [p.grad for p in self._params if p.grad is not None]
        bad = torch.tensor(float(self._acc_nonfinite), device=self.device)
        if grads:
            bad = (
                bad + (~torch.stack([g.isfinite().all() for g in grads])).sum()
            )
        if dist.is_available() and dist.is_initialized():
            # a non-finite LOSS with finite gradients is local: decide the
            # skip together so that the ranks never diverge
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        finite = not bool(bad > 0)
        stats = {f"loss_{k}": v for k, v in self._acc_loss.items()}
        if finite or self.scaler.is_enabled():
            stats["grad_norm"] = self.optimizers_step()
        else:
            for opt in self.optimizers_dict.values():
                opt.zero_grad(set_to_none=True)
        if not finite:
            self._count_skip("a non-finite gradient")
        self._log_step(stats, skipped=not finite)
        self._reset_accumulators()

    def _count_skip(self, what):
        self.skipped_steps += 1
        logger.warning(
            "%s: skipping optimizer step %d (%d skipped so far)",
            what,
            self.optimizer_step + 1,
            self.skipped_steps,
        )

    def _scale(self) -> float:
        """The GradScaler's current scale (1.0 when disabled); scaling a
        unit tensor also initialises the scaler lazily, as the per-task path
        never calls ``scaler.scale(loss)`` itself."""
        if not self.scaler.is_enabled():
            return 1.0
        one = torch.ones((), device=self.device)
        return float(self.scaler.scale(one))

    def _surgery_step(self):
        """Average across ranks, unscale, combine in place, step."""
        main, aux = self.loss_names
        if not self._window_open:  # every micro-batch was non-finite
            self._open_window()
        flat_main, flat_aux = self._flat["main"], self._flat["aux"]
        if self._acc_nonfinite:
            # poison (not skip) so that every DDP rank skips together
            flat_main.fill_(float("nan"))
            flat_aux.fill_(float("nan"))
        average_across_ranks(self._flat)  # in place
        scale = self._scale()
        if scale != 1.0:
            flat_main.mul_(1.0 / scale)
            flat_aux.mul_(1.0 / scale)
        ns = self._n_shared
        sm, sa = flat_main[:ns], flat_aux
        checks = [sm.norm(), sa.norm(), torch.dot(sm, sa)]
        if ns < flat_main.numel():  # the non-shared part (main + aux)
            checks.append(flat_main[ns:].norm())
        norms = torch.stack(checks)
        finite = bool(torch.isfinite(norms).all())  # one sync per step

        stats = {f"loss_{k}": v for k, v in self._acc_loss.items()}
        if finite:
            combined, rule_stats = self.rule(
                sm,
                sa,
                segments=self._segments if self.rule.per_tensor else None,
                lr=self._current_lr() if self.rule.needs_lr else None,
            )
            sm.copy_(combined)
            del combined
            stats.update(rule_stats)
        else:
            self._count_skip(
                "Non-finite task gradient ("
                + ", ".join(
                    f"{k}: {'ok' if torch.isfinite(v).all() else 'non-finite'}"
                    for k, v in ((main, sm), (aux, sa))
                )
                + ")"
            )
            sm.add_(sa)  # keeps the non-finite values for the GradScaler

        self._point_grads("main")
        if finite or self.scaler.is_enabled():
            # back to the GradScaler's space: it unscales, skips on inf and
            # backs the scale off by itself
            if scale != 1.0:
                flat_main.mul_(scale)
            stats["grad_norm"] = self.optimizers_step()
        else:
            for opt in self.optimizers_dict.values():
                opt.zero_grad(set_to_none=True)

        stats.update(
            {
                f"gnorm_{main}": norms[0],
                f"gnorm_{aux}": norms[1],
                "cos": norms[2] / (norms[0] * norms[1] + 1e-30),
            }
        )
        self._log_step(stats, skipped=not finite)
        self._reset_accumulators()

    def _current_lr(self) -> float:
        opt = next(iter(self.optimizers_dict.values()))
        return float(opt.param_groups[0]["lr"])

    def optimizers_step(self):
        """SpeechBrain's optimizer step, clipping ALL trainable parameters.

        Unscale (GradScaler), clip each optimizer's parameters of every
        param group to ``max_grad_norm``, step (skipped by the GradScaler
        on inf/NaN), update the scale, zero the gradients.

        Returns
        -------
        torch.Tensor or None
            Pre-clip gradient norm of the first optimizer (None without
            clipping).
        """
        valid = self.freeze_optimizers(self.optimizers_dict)
        for opt in valid.values():
            self.scaler.unscale_(opt)
        first_norm = None
        if self.max_grad_norm > 0.0:
            for opt in valid.values():
                params = [
                    p
                    for group in opt.param_groups
                    for p in group["params"]
                    if p.grad is not None
                ]
                norm = torch.nn.utils.clip_grad_norm_(
                    params, self.max_grad_norm
                )
                if first_norm is None:
                    first_norm = norm
        for opt in valid.values():
            self.scaler.step(opt)
        self.scaler.update()
        for opt in valid.values():
            opt.zero_grad(set_to_none=True)
        self.optimizer_step += 1
        return first_norm

    # ------------------------------------------------------------------
    # evaluation
    # ------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_batch(self, batch, stage):
        """Evaluate one batch; ``compute_objectives`` may return a dict.

        Arguments
        ---------
        batch : any
        stage : speechbrain.Stage

        Returns
        -------
        torch.Tensor
            The detached total loss.
        """
        with self.evaluation_ctx:
            out = self.compute_forward(batch, stage=stage)
            losses = self.compute_objectives(out, batch, stage=stage)
        return self.total_loss(losses).detach().cpu()

    # ------------------------------------------------------------------
    # logging
    # ------------------------------------------------------------------
    def _log_step(self, stats, skipped):
        keys = [k for k, v in stats.items() if v is not None]
        values = torch.stack(
            [
                torch.as_tensor(stats[k], device=self.device).detach().float()
                for k in keys
            ]
        ).tolist()  # one device sync per step
        self.surgery_stats = dict(zip(keys, values, strict=True))
        if not skipped:
            for k, v in self.surgery_stats.items():
                self._epoch_sums[k] = self._epoch_sums.get(k, 0.0) + v
            self._epoch_count += 1
        if not sb.utils.distributed.if_main_process():
            return
        row = {"step": self.optimizer_step, "skipped": int(skipped)}
        row.update(self.surgery_stats)
        path = getattr(self.hparams, "surgery_log_file", None)
        if path:
            self._append_csv(path, row)
        tb = getattr(self.hparams, "tensorboard_train_logger", None)
        if tb is not None:
            tb.log_stats(
                stats_meta={"step": self.optimizer_step},
                train_stats=self.surgery_stats,
            )

    def _append_csv(self, path, row):
        columns = getattr(self, "_csv_columns", None)
        if columns is None:
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path, newline="") as f:
                    columns = next(csv.reader(f))
            else:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                columns = list(row)
                # the header whole or absent: a resume reads the columns
                with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
                    csv.writer(f).writerow(columns)
            self._csv_columns = columns
        with open(path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in columns])

    def surgery_summary(self, reset=True) -> dict[str, float]:
        """Mean of the per-step statistics since the last call.

        Call it from ``on_stage_end`` to put task losses, gradient norms,
        cosine and rule coefficients into the epoch's train stats.

        Arguments
        ---------
        reset : bool
            Start a new averaging window.

        Returns
        -------
        dict of str to float
            Includes ``skipped_steps`` (total so far).
        """
        n = max(self._epoch_count, 1)
        out = {k: v / n for k, v in self._epoch_sums.items()}
        out["skipped_steps"] = self.skipped_steps
        if reset:
            self._epoch_sums, self._epoch_count = {}, 0
        return out
