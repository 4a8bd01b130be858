"""Two-task gradient surgery: the rules, as pure functions on flat vectors.

Every method of this project trains with TWO losses whose gradients are
combined by a rule before the optimizer step:

==========  =================  =================  ===========================
method      main loss          auxiliary loss     rule
==========  =================  =================  ===========================
D4AM        classification     regression (SE)    :class:`D4AM` (GCLB + SRPR)
GR          ASR                enhancement        :class:`GradientRemedy`
GPIT        encoder embedding  SI-SDR (optional)  any
distill     distillation       enhancement head   any (default :class:`Sum`)
==========  =================  =================  ===========================

The functions here work on FLAT gradient vectors (all parameters
concatenated, fp32 or wider), so that they can be property-tested in
isolation; :class:`robust_brain.brain.DualLossBrain` builds those vectors,
averages them across DDP ranks, applies a rule and writes the result back.

Conventions
-----------
* ``g_main`` is the gradient of the downstream (recognition) loss, the one
  the front-end is trained FOR; ``g_aux`` is the gradient of the auxiliary
  (signal-level) loss. Rules return ``(combined, stats)`` where ``stats`` is
  a dict of 0-dim tensors for logging.
* All rules are applied to TRUE (unscaled) gradients: the engine divides by
  the GradScaler's scale first. This matters for the rules that are not
  positively homogeneous (Langevin noise, the ε guards, SRPR's state).
* Tiny or zero norms never produce NaN/Inf: every division is guarded.

Example
-------
>>> import torch
>>> g_cls = torch.tensor([1.0, -1.0])
>>> g_reg = torch.tensor([0.0, 1.0])
>>> alpha, dot, nsq = calibrate(g_cls, g_reg)
>>> alpha.item(), dot.item(), nsq.item()
(1.0, -1.0, 1.0)
>>> g_cls + alpha * g_reg  # now orthogonal to g_reg
tensor([1., 0.])
"""

import math
from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist

__all__ = [
    "flatten",
    "task_gradients",
    "average_across_ranks",
    "calibrate",
    "langevin_noise",
    "SRPRWeighter",
    "remedy",
    "pcgrad",
    "CombinationRule",
    "Sum",
    "Weighted",
    "GCLB",
    "SRPR",
    "D4AM",
    "GradientRemedy",
    "PCGrad",
    "RULE_NAMES",
    "make_rule",
]


def _flat_dtype(params: Sequence[torch.Tensor]) -> torch.dtype:
    """fp32, or float64 when a parameter is float64 (exact tests)."""
    dtype = torch.float32
    for p in params:
        dtype = torch.promote_types(dtype, p.dtype)
    return dtype


def flatten(
    grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Concatenate per-parameter gradients into one flat vector.

    Arguments
    ---------
    grads : sequence of tensors or None
        One gradient per parameter; ``None`` (the loss does not reach that
        parameter) becomes zeros.
    params : sequence of tensors
        The parameters, for shapes, device and dtype.

    Returns
    -------
    torch.Tensor
        Flat vector of length ``sum(p.numel())`` in fp32 (float64 if a
        parameter is float64).

    Example
    -------
    >>> p = [torch.zeros(2, 2), torch.zeros(3)]
    >>> flatten([torch.ones(2, 2), None], p)
    tensor([1., 1., 1., 1., 0., 0., 0.])
    """
    dtype = _flat_dtype(params)
    device = params[0].device if params else torch.device("cpu")
    numel = sum(p.numel() for p in params)
    out = torch.zeros(numel, dtype=dtype, device=device)
    offset = 0
    for g, p in zip(grads, params, strict=True):
        n = p.numel()
        if g is not None:
            out[offset : offset + n].copy_(g.reshape(-1))
        offset += n
    return out


def task_gradients(
    losses: Mapping[str, torch.Tensor],
    params: Sequence[torch.Tensor],
    retain_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """Flat gradient of each named loss over ``params``, from ONE graph.

    The losses share a single forward pass; each is differentiated with
    ``torch.autograd.grad`` (the graph is kept until the last one). A loss
    that does not reach a parameter contributes zeros there, and a loss with
    no graph at all (a constant) gives a zero vector.

    Under DDP these are LOCAL gradients (``autograd.grad`` bypasses DDP's
    reducer): pass them through :func:`average_across_ranks` before any rule.

    Arguments
    ---------
    losses : mapping of str to scalar tensor
        The losses, in a fixed order.
    params : sequence of tensors
        Parameters to differentiate with respect to.
    retain_graph : bool
        Keep the graph after the last loss as well.

    Returns
    -------
    dict of str to torch.Tensor
        Flat gradients, same keys and order as ``losses``.

    Example
    -------
    >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> v = torch.tensor([3.0], requires_grad=True)
    >>> g = task_gradients({"a": (w**2).sum(), "b": 2 * v.sum()}, [w, v])
    >>> g["a"], g["b"]
    (tensor([2., 4., 0.]), tensor([0., 0., 2.]))
    """
    params = list(params)
    names = list(losses)
    out = {}
    for i, name in enumerate(names):
        loss = losses[name]
        if not loss.requires_grad:
            out[name] = flatten([None] * len(params), params)
            continue
        keep = retain_graph or i < len(names) - 1
        grads = torch.autograd.grad(
            loss, params, retain_graph=keep, allow_unused=True
        )
        out[name] = flatten(grads, params)
    return out


def average_across_ranks(
    grads: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """All-reduce (mean), IN PLACE, each task's flat gradient across ranks.

    ``torch.autograd.grad`` returns the LOCAL gradient even under
    DistributedDataParallel, with no warning; the rules are nonlinear, so
    the per-task gradients must be averaged BEFORE combining (averaging
    after projecting is a different algorithm, and the ranks would drift
    apart). One collective is issued for all tasks together.

    The tensors are averaged in place (no copy of the flat vectors, which
    are as large as the model); identity when ``torch.distributed`` is not
    initialised or has one rank.

    Arguments
    ---------
    grads : mapping of str to flat tensors
        Must have the same keys, order and sizes on every rank; modified
        in place.

    Returns
    -------
    dict of str to torch.Tensor
        The averaged gradients.

    Example
    -------
    >>> average_across_ranks({"a": torch.ones(2)})  # single process
    {'a': tensor([1., 1.])}
    """
    grads = dict(grads)
    if not (dist.is_available() and dist.is_initialized()):
        return grads
    world = dist.get_world_size()
    if world == 1:
        return grads
    for name in grads:  # same order on every rank
        dist.all_reduce(grads[name], op=dist.ReduceOp.SUM)
        grads[name].div_(world)
    return grads


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den where den > tiny, else 0 (no NaN/Inf from tiny norms)."""
    tiny = torch.finfo(den.dtype).tiny
    ok = den > tiny
    return torch.where(ok, num / torch.where(ok, den, 1.0), 0.0)


def calibrate(
    g_cls: torch.Tensor, g_reg: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """D4AM gradient calibration coefficient (docs/methods.md, GCLB).

    ``alpha_gclb = max(0, -<g_cls, g_reg> / ||g_reg||^2)``, and 0 when
    ``||g_reg|| = 0``. Adding ``alpha_gclb * g_reg`` to ``g_cls`` projects
    ``g_cls`` onto the normal plane of ``g_reg`` when they conflict and
    leaves it unchanged otherwise: the regression gradient is the anchor.

    Arguments
    ---------
    g_cls : torch.Tensor
        Flat classification (main) gradient.
    g_reg : torch.Tensor
        Flat regression (auxiliary) gradient.

    Returns
    -------
    alpha_gclb : torch.Tensor
        0-dim, >= 0.
    dot : torch.Tensor
        ``<g_cls, g_reg>``.
    reg_norm_sq : torch.Tensor
        ``||g_reg||^2``.

    Example
    -------
    >>> a, d, n = calibrate(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0]))
    >>> a.item()  # no conflict: nothing to remove
    0.0
    >>> calibrate(torch.ones(2), torch.zeros(2))[0].item()
    0.0
    """
    dot = torch.dot(g_cls, g_reg)
    nsq = torch.dot(g_reg, g_reg)
    alpha = _safe_div(-dot, nsq).clamp_min(0.0)
    return alpha, dot, nsq


def langevin_noise(
    g: torch.Tensor,
    lr: float,
    num_samples: int,
    momentum: float = 0.9,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """D4AM's Langevin-style gradient noise (official ``inject_grad_noise``).

    ``g + xi * sigma * sqrt(1 - m) / lr * |g|^(1/2)`` with
    ``sigma^2 = 2 lr (1 - m) / N`` and ``xi ~ N(0, 1)`` per element.
    With lr = 1e-4, m = 0.9, N = 2.5e5 the factor is 0.028 (docs/methods.md,
    Langevin noise: 9e-3, once quoted for the same numbers, does not
    follow; the formula above is what the official code computes). Not
    positively homogeneous: apply it to TRUE (unscaled) gradients.

    Arguments
    ---------
    g : torch.Tensor
        Flat gradient.
    lr : float
        The optimizer's current learning rate (> 0).
    num_samples : int
        Number of files in the speech-only training set (> 0).
    momentum : float
        m in the formula.
    generator : torch.Generator, optional
        Random source (default: the global one, seeded by the recipe).

    Returns
    -------
    torch.Tensor
        The noisy gradient.

    Example
    -------
    >>> g = torch.full((1000,), 4.0)
    >>> out = langevin_noise(g, lr=1e-4, num_samples=250_000)
    >>> round(((out - g).std() / 2.0).item(), 2)  # factor * |g|^(1/2)
    0.03
    """
    if lr <= 0 or num_samples <= 0:
        raise ValueError(
            f"langevin_noise needs lr > 0 and num_samples > 0, got "
            f"lr={lr}, num_samples={num_samples}"
        )
    sigma = math.sqrt(2.0 * lr * (1.0 - momentum) / num_samples)
    factor = sigma * math.sqrt(1.0 - momentum) / lr
    xi = torch.randn(
        g.shape, dtype=g.dtype, device=g.device, generator=generator
    )
    return g + xi * factor * g.abs().sqrt()


class SRPRWeighter(torch.nn.Module):
    """D4AM's regression-objective weight ``alpha_srpr`` (docs/methods.md).

    Gradient descent, averaged over a window, on
    ``|| alpha * g_reg - (g_cls + alpha_gclb * g_reg) ||^2``::

        h += 2 * alpha * n - 2 * (d + alpha_gclb * n)     (each update)
        every M updates: alpha = max(floor,
                                     alpha + clip(-beta * h / M, -c, c))
                         h = 0

    With a constant pair and ``d > 0`` (so ``alpha_gclb = 0``) it converges to
    ``alpha* = d / n`` when ``beta * n < 1``; when the pair conflicts the
    calibrated target is orthogonal to ``g_reg`` and alpha decays to the
    floor. The state lives in buffers, so it is saved and restored by a
    SpeechBrain checkpointer.

    Arguments
    ---------
    init : float
        Initial alpha_srpr (1.0 in the paper).
    beta : float
        Step size (0.05).
    window : int
        M, updates averaged per step (8).
    max_step : float
        Clip of each step (1.0).
    floor : float
        Lower bound (0.0).

    Example
    -------
    >>> w = SRPRWeighter(window=2)
    >>> for _ in range(2):
    ...     _ = w.update(torch.tensor(2.0), torch.tensor(4.0), torch.tensor(0.))
    >>> w.alpha.item()  # 1.0 - 0.05 * (2 * 1 * 4 - 2 * 2) = 0.8
    0.8...
    """

    def __init__(
        self,
        init: float = 1.0,
        beta: float = 0.05,
        window: int = 8,
        max_step: float = 1.0,
        floor: float = 0.0,
    ):
        super().__init__()
        if window < 1 or beta <= 0 or max_step <= 0:
            raise ValueError(
                "SRPRWeighter needs window >= 1, beta > 0 and max_step > 0, "
                f"got window={window}, beta={beta}, max_step={max_step}"
            )
        self.beta = beta
        self.window = window
        self.max_step = max_step
        self.floor = floor
        self.register_buffer("alpha", torch.tensor(float(init)))
        self.register_buffer("h", torch.tensor(0.0))
        self.register_buffer("count", torch.tensor(0, dtype=torch.long))

    @torch.no_grad()
    def update(
        self,
        dot: torch.Tensor,
        reg_norm_sq: torch.Tensor,
        alpha_gclb: torch.Tensor,
    ) -> torch.Tensor:
        """Accumulate one update's alpha-gradient; step every ``window``.

        Arguments
        ---------
        dot : torch.Tensor
            ``<g_cls, g_reg>`` of this update.
        reg_norm_sq : torch.Tensor
            ``||g_reg||^2``.
        alpha_gclb : torch.Tensor
            The calibration coefficient of this update.

        Returns
        -------
        torch.Tensor
            alpha_srpr after the update.
        """
        a, d, n = self.alpha, dot.to(self.h), reg_norm_sq.to(self.h)
        self.h += 2 * a * n - 2 * (d + alpha_gclb.to(self.h) * n)
        self.count += 1
        if int(self.count) % self.window == 0:
            step = (-self.beta * self.h / self.window).clamp(
                -self.max_step, self.max_step
            )
            self.alpha.copy_((a + step).clamp_min(self.floor))
            self.h.zero_()
        return self.alpha.clone()


def _segment_sums(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over consecutive segments of the given lengths."""
    return torch.segment_reduce(x, "sum", lengths=lengths)


def _expand(coef: torch.Tensor, lengths: torch.Tensor, n: int):
    """Broadcast one coefficient per segment back to ``n`` elements."""
    return coef.repeat_interleave(lengths, output_size=n)


def remedy(
    g_se: torch.Tensor,
    g_asr: torch.Tensor,
    k: float = 5.0,
    segments: torch.Tensor | None = None,
    angle: bool = True,
    scale: bool = True,
    eps: float = 1e-12,
    return_stats: bool = False,
):
    """Gradient Remedy (Hu et al., ICASSP 2023; docs/methods.md).

    1. Angle: when ``<g_se, g_asr> < 0``, project ``g_se`` onto the normal
       plane of ``g_asr`` and add a component along ``g_asr`` so that the
       result makes the acute angle ``theta = arctan(||g_se|| / ||g_asr||)``
       (norms taken before any change) with ``g_asr``.
    2. Magnitude: when ``r = ||g_se|| / ||g_asr|| > k`` (after step 1) and
       ``c = cos(g_se, g_asr) > eps``, shrink ``g_se`` by ``c`` and stretch
       ``g_asr`` by ``1 / c``.

    ``segments`` (one length per parameter tensor, summing to the vector
    length) applies the remedy to each tensor separately, as the official
    code does; without it the whole vector is one segment. Where either
    norm is below ``eps`` (no angle is defined) the segment is left
    unchanged, and the rescale needs ``c > eps``: tiny or zero gradients
    never produce NaN/Inf (the official code divides by a zero ASR norm and
    can stretch by an unbounded ``1/c``).

    Arguments
    ---------
    g_se : torch.Tensor
        Flat enhancement (auxiliary) gradient.
    g_asr : torch.Tensor
        Flat ASR (main) gradient.
    k : float
        Rescale threshold K (5 in the official code).
    segments : torch.Tensor, optional
        Long tensor of segment lengths for the per-tensor remedy.
    angle : bool
        Apply step 1 (``GR-angle``).
    scale : bool
        Apply step 2 (``GR-scale``).
    eps : float
        Guard for norms and cosines.
    return_stats : bool
        Also return a dict of logging statistics.

    Returns
    -------
    g_se, g_asr : torch.Tensor
        The remedied gradients (sum them for the update).
    stats : dict, only if ``return_stats``
        ``conflict`` (fraction of segments in conflict), ``rescaled``
        (fraction rescaled), ``angle_deg`` (mean angle theta over
        conflicting segments), ``ratio`` (mean r).

    Example
    -------
    >>> g_se, g_asr = torch.tensor([-1.0, 1.0]), torch.tensor([1.0, 0.0])
    >>> a, b = remedy(g_se, g_asr)
    >>> a  # at arctan(||g_se|| / ||g_asr||) = 54.7 deg from g_asr
    tensor([0.7071, 1.0000])
    >>> b
    tensor([1., 0.])
    """
    coefs, stats = _remedy_coefficients(
        g_se, g_asr, k, segments, angle, scale, eps
    )
    a, s_se, s_asr, segments = coefs
    n = g_se.numel()
    out_se = _expand(s_se, segments, n) * (
        g_se + _expand(a, segments, n) * g_asr
    )
    out_asr = _expand(s_asr, segments, n) * g_asr
    if not return_stats:
        return out_se, out_asr
    return out_se, out_asr, stats


def _remedy_coefficients(g_se, g_asr, k, segments, angle, scale, eps):
    """Per-segment coefficients of the remedy: the result is
    ``g_se' = s_se * (g_se + a * g_asr)`` and ``g_asr' = s_asr * g_asr``."""
    n = g_se.numel()
    if segments is None:
        segments = torch.tensor([n], device=g_se.device)
    segments = segments.to(g_se.device)
    se_sq = _segment_sums(g_se * g_se, segments)
    asr_sq = _segment_sums(g_asr * g_asr, segments)
    dot = _segment_sums(g_se * g_asr, segments)
    eps_sq = eps * eps
    valid = (se_sq > eps_sq) & (asr_sq > eps_sq)
    se_n, asr_n = se_sq.sqrt(), asr_sq.sqrt()

    # step 1: g_se <- g_se + a * g_asr on conflicting segments
    conflict = valid & (dot < 0) if angle else torch.zeros_like(valid)
    perp_sq = (se_sq - _safe_div(dot * dot, asr_sq)).clamp_min(0.0)
    perp_n = perp_sq.sqrt()
    a = torch.where(
        conflict, _safe_div(-dot, asr_sq) + _safe_div(perp_n, se_n), 0.0
    )
    # statistics of the remedied g_se, in closed form
    new_dot = torch.where(conflict, _safe_div(perp_n, se_n) * asr_sq, dot)
    new_sq = torch.where(
        conflict, perp_sq + _safe_div(perp_sq, se_sq) * asr_sq, se_sq
    )
    new_n = new_sq.sqrt()

    # step 2: rescale where r > k
    ratio = _safe_div(new_n, asr_n)
    cos = _safe_div(new_dot, new_n * asr_n)
    if scale:
        rescale = valid & (ratio > k) & (cos > eps)
    else:
        rescale = torch.zeros_like(valid)
    s_se = torch.where(rescale, cos, 1.0)
    s_asr = torch.where(rescale, _safe_div(torch.ones_like(cos), cos), 1.0)

    theta = torch.atan2(se_n, asr_n) * (180.0 / math.pi)
    n_conf = conflict.sum()
    stats = {
        "conflict": conflict.float().mean(),
        "rescaled": rescale.float().mean(),
        "angle_deg": _safe_div(
            (theta * conflict).sum(), n_conf.to(theta.dtype)
        ),
        "ratio": ratio.mean(),
    }
    return (a, s_se, s_asr, segments), stats


def pcgrad(
    g_a: torch.Tensor, g_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-task PCGrad (Yu et al., 2020): remove the conflicting component.

    When ``<g_a, g_b> < 0`` each gradient is projected onto the normal plane
    of the OTHER (original) gradient; otherwise both are unchanged. Zero
    norms are safe.

    Arguments
    ---------
    g_a, g_b : torch.Tensor
        Flat gradients of the two tasks.

    Returns
    -------
    g_a, g_b : torch.Tensor
        The projected gradients (sum them for the update).

    Example
    -------
    >>> pcgrad(torch.tensor([1.0, 1.0]), torch.tensor([-1.0, 0.0]))
    (tensor([0., 1.]), tensor([-0.5000,  0.5000]))
    """
    dot = torch.dot(g_a, g_b)
    conflict = dot < 0
    ca = torch.where(conflict, _safe_div(dot, torch.dot(g_b, g_b)), 0.0)
    cb = torch.where(conflict, _safe_div(dot, torch.dot(g_a, g_a)), 0.0)
    return g_a - ca * g_b, g_b - cb * g_a


class CombinationRule(torch.nn.Module):
    """How two task gradients become one update (LibMTL/torchjd style).

    Subclasses implement :meth:`combine`. ``per_tensor`` rules receive the
    parameter-tensor boundaries as ``segments``. Rules with state keep it in
    buffers, so the engine checkpoints them.

    Example
    -------
    >>> rule = Sum()
    >>> g, stats = rule(torch.ones(2), torch.ones(2))
    >>> g
    tensor([2., 2.])
    """

    per_tensor = False
    #: the rule needs the optimizer's learning rate (Langevin noise)
    needs_lr = False
    #: ``(w_main, w_aux)`` for LINEAR rules, which the engine runs as ONE
    #: backward of ``w_main L_main + w_aux L_aux`` (SpeechBrain's own
    #: computation, no overhead); None for rules that need both gradients
    linear_weights: tuple[float, float] | None = None

    def combine(
        self,
        g_main: torch.Tensor,
        g_aux: torch.Tensor,
        segments: torch.Tensor | None = None,
        lr: float | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the combined flat gradient and logging statistics.

        Arguments
        ---------
        g_main : torch.Tensor
            Flat gradient of the main (downstream) loss.
        g_aux : torch.Tensor
            Flat gradient of the auxiliary (signal-level) loss.
        segments : torch.Tensor, optional
            Lengths of the parameter tensors (``per_tensor`` rules).
        lr : float, optional
            Current learning rate (rules with ``needs_lr``).

        Returns
        -------
        combined : torch.Tensor
        stats : dict of str to 0-dim tensors
        """
        raise NotImplementedError

    def forward(self, g_main, g_aux, segments=None, lr=None):
        """Alias of :meth:`combine` (``rule(g_main, g_aux)``)."""
        return self.combine(g_main, g_aux, segments=segments, lr=lr)


class Sum(CombinationRule):
    """Plain multi-task sum ``g_main + g_aux`` (GR's ``MTL`` baseline).

    Also the rule of single-loss stages (D4AM's INIT and CLSO): the absent
    loss contributes a zero gradient.

    Example
    -------
    >>> Sum()(torch.tensor([1.0]), torch.tensor([2.0]))[0]
    tensor([3.])
    """

    linear_weights = (1.0, 1.0)

    def combine(self, g_main, g_aux, segments=None, lr=None):
        """See :meth:`CombinationRule.combine`."""
        return g_main + g_aux, {}


class Weighted(CombinationRule):
    """Fixed weights ``w_main * g_main + w_aux * g_aux`` (D4AM's GRID).

    By linearity, equal to one backward of ``w_main L_main + w_aux L_aux``.

    Arguments
    ---------
    w_main : float
        Weight of the main gradient.
    w_aux : float
        Weight of the auxiliary gradient (GRID's alpha).

    Example
    -------
    >>> Weighted(1.0, 0.5)(torch.tensor([1.0]), torch.tensor([2.0]))[0]
    tensor([2.])
    """

    def __init__(self, w_main: float = 1.0, w_aux: float = 1.0):
        super().__init__()
        self.w_main = float(w_main)
        self.w_aux = float(w_aux)
        self.linear_weights = (self.w_main, self.w_aux)

    def combine(self, g_main, g_aux, segments=None, lr=None):
        """See :meth:`CombinationRule.combine`."""
        return self.w_main * g_main + self.w_aux * g_aux, {}


class D4AM(CombinationRule):
    """D4AM: ``g = g_cls + (alpha_gclb + alpha_srpr) * g_reg``.

    See docs/methods.md, The D4AM update. One global dot product over all
    shared parameters (not per layer). ``alpha_srpr`` is updated AFTER
    ``g`` is formed with its current value; the optional Langevin noise is
    added to ``g`` afterwards (before the engine clips). :class:`GCLB` and
    :class:`SRPR` are the ablations.

    Arguments
    ---------
    weighter : SRPRWeighter, optional
        The alpha_srpr state (a default one is made when None).
    use_gclb : bool
        Add ``alpha_gclb * g_reg`` to the update.
    use_srpr : bool
        Add ``alpha_srpr * g_reg`` and update alpha_srpr.
    langevin : bool
        Add Langevin gradient noise (needs ``num_samples`` and ``lr``).
    num_samples : int
        Size N of the speech-only set, for the noise variance.
    momentum : float
        m of the noise formula (0.9).

    Example
    -------
    >>> rule = D4AM(langevin=False)
    >>> g, stats = rule(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0]))
    >>> g  # calibrated (alpha_gclb = 1) + alpha_srpr (1.0) * g_reg
    tensor([1., 1.])
    >>> sorted(stats)
    ['alpha_gclb', 'alpha_srpr']
    """

    def __init__(
        self,
        weighter: SRPRWeighter | None = None,
        use_gclb: bool = True,
        use_srpr: bool = True,
        langevin: bool = False,
        num_samples: int | None = None,
        momentum: float = 0.9,
    ):
        super().__init__()
        if langevin and not use_srpr:
            raise ValueError("Langevin noise belongs to the D4AM/SRPR modes")
        if langevin and (num_samples is None or num_samples <= 0):
            raise ValueError(
                "D4AM(langevin=True) needs num_samples, the size of the "
                f"speech-only training set; got {num_samples!r}"
            )
        self.use_gclb = use_gclb
        self.use_srpr = use_srpr
        self.langevin = langevin
        self.num_samples = num_samples
        self.momentum = momentum
        self.needs_lr = langevin
        if use_srpr:
            self.weighter = weighter if weighter is not None else SRPRWeighter()
        else:
            self.weighter = None

    def combine(self, g_main, g_aux, segments=None, lr=None):
        """See :meth:`CombinationRule.combine`."""
        alpha_gclb, dot, nsq = calibrate(g_main, g_aux)
        coef = torch.zeros_like(alpha_gclb)
        stats = {"alpha_gclb": alpha_gclb}
        if self.use_gclb:
            coef = coef + alpha_gclb
        if self.use_srpr:
            alpha_srpr = self.weighter.alpha.to(coef)
            coef = coef + alpha_srpr
            stats["alpha_srpr"] = alpha_srpr.clone()
            # the alpha-gradient always uses alpha_gclb (official SRPR mode)
            self.weighter.update(dot, nsq, alpha_gclb)
        g = torch.addcmul(g_main, coef, g_aux)
        if self.langevin:
            if lr is None:
                raise ValueError("D4AM(langevin=True) needs the current lr")
            g = langevin_noise(g, lr, self.num_samples, self.momentum)
        return g, stats


class GCLB(D4AM):
    """D4AM ablation: gradient calibration only, ``g_cls + a_gclb g_reg``.

    Example
    -------
    >>> GCLB()(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0]))[0]
    tensor([1., 0.])
    """

    def __init__(self):
        super().__init__(use_gclb=True, use_srpr=False)


class SRPR(D4AM):
    """D4AM ablation: ``g_cls + alpha_srpr * g_reg`` (alpha_gclb only used
    inside alpha_srpr's update, as the official code does).

    Arguments
    ---------
    weighter, langevin, num_samples, momentum
        As for :class:`D4AM`.

    Example
    -------
    >>> SRPR()(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0]))[0]
    tensor([1., 0.])
    """

    def __init__(
        self, weighter=None, langevin=False, num_samples=None, momentum=0.9
    ):
        super().__init__(
            weighter=weighter,
            use_gclb=False,
            use_srpr=True,
            langevin=langevin,
            num_samples=num_samples,
            momentum=momentum,
        )


class GradientRemedy(CombinationRule):
    """Gradient Remedy, applied per parameter tensor (see :func:`remedy`).

    ``g_main`` is the ASR gradient (the anchor), ``g_aux`` the enhancement
    gradient. ``angle=False`` gives ``GR-scale``, ``scale=False`` gives
    ``GR-angle``.

    Arguments
    ---------
    k : float
        Rescale threshold (5).
    angle : bool
        Apply the angle projection.
    scale : bool
        Apply the magnitude rescale.
    per_tensor : bool
        Remedy each parameter tensor separately (official behaviour) or the
        whole vector at once.
    eps : float
        Guard for tiny norms and cosines.

    Example
    -------
    >>> rule = GradientRemedy(per_tensor=False)
    >>> g, stats = rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0]))
    >>> g
    tensor([1.7071, 1.0000])
    >>> round(stats["angle_deg"].item(), 2)
    54.74
    """

    def __init__(
        self,
        k: float = 5.0,
        angle: bool = True,
        scale: bool = True,
        per_tensor: bool = True,
        eps: float = 1e-12,
    ):
        super().__init__()
        self.k = k
        self.angle = angle
        self.scale = scale
        self.per_tensor = per_tensor
        self.eps = eps

    def combine(self, g_main, g_aux, segments=None, lr=None):
        """See :meth:`CombinationRule.combine`."""
        g_se, g_asr = g_aux, g_main
        (a, s_se, s_asr, segs), stats = _remedy_coefficients(
            g_se,
            g_asr,
            self.k,
            segments if self.per_tensor else None,
            self.angle,
            self.scale,
            self.eps,
        )
        # g_se' + g_asr' = s_se * g_se + (s_se * a + s_asr) * g_asr: two
        # broadcasts and one fused multiply-add over the flat vectors
        n = g_se.numel()
        c_se = _expand(s_se, segs, n)
        c_asr = _expand(s_se * a + s_asr, segs, n)
        return torch.addcmul(c_se.mul_(g_se), c_asr, g_asr), stats


class PCGrad(CombinationRule):
    """Two-task PCGrad baseline (see :func:`pcgrad`).

    Arguments
    ---------
    per_tensor : bool
        Project each parameter tensor separately (the engine passes the
        tensor boundaries), as Gradient Remedy does, so that the two rules
        are compared on the same granularity; ``False`` (Yu et al., 2020):
        one projection of the whole gradient vector.

    Example
    -------
    >>> PCGrad()(torch.tensor([1.0, 1.0]), torch.tensor([-1.0, 0.0]))[0]
    tensor([-0.5000,  1.5000])
    >>> # per tensor: only the conflicting first tensor is projected
    >>> rule = PCGrad(per_tensor=True)
    >>> g_main = torch.tensor([1.0, 1.0, 1.0])
    >>> g_aux = torch.tensor([-2.0, 0.0, 3.0])
    >>> rule(g_main, g_aux, segments=torch.tensor([1, 2]))[0]
    tensor([0., 1., 4.])
    >>> rule(g_main, g_aux)[0]  # no boundaries: the whole vector agrees
    tensor([-1.,  1.,  4.])
    """

    def __init__(self, per_tensor: bool = False):
        super().__init__()
        self.per_tensor = per_tensor

    def combine(self, g_main, g_aux, segments=None, lr=None):
        """See :meth:`CombinationRule.combine`."""
        if segments is None or not self.per_tensor:
            dot = torch.dot(g_main, g_aux)
            conflict = dot < 0
            ca = torch.where(
                conflict, _safe_div(dot, torch.dot(g_aux, g_aux)), 0.0
            )
            cb = torch.where(
                conflict, _safe_div(dot, torch.dot(g_main, g_main)), 0.0
            )
            # (g_a - ca g_b) + (g_b - cb g_a) in one fused pass
            return torch.addcmul((1 - ca) * g_aux, 1 - cb, g_main), {}
        n = g_main.numel()
        segments = segments.to(g_main.device)
        dot = _segment_sums(g_main * g_aux, segments)
        conflict = dot < 0
        ca = torch.where(
            conflict, _safe_div(dot, _segment_sums(g_aux * g_aux, segments)), 0
        )
        cb = torch.where(
            conflict,
            _safe_div(dot, _segment_sums(g_main * g_main, segments)),
            0,
        )
        return torch.addcmul(
            _expand(1 - ca, segments, n) * g_aux,
            _expand(1 - cb, segments, n),
            g_main,
        ), {}


#: names accepted by :func:`make_rule` (one hparam selects the rule)
RULE_NAMES = (
    "sum",
    "grid",
    "gclb",
    "srpr",
    "d4am",
    "gr",
    "gr-angle",
    "gr-scale",
    "pcgrad",
)


def make_rule(
    name: str,
    grid_alpha: float = 1.0,
    k: float = 5.0,
    per_tensor: bool | None = None,
    srpr_init: float = 1.0,
    srpr_beta: float = 0.05,
    srpr_window: int = 8,
    langevin: bool = False,
    num_samples: int | None = None,
) -> CombinationRule:
    """Build a rule from its name, so that ONE hparam selects it.

    ``sum`` (GR's MTL, D4AM's single-loss stages), ``grid`` (fixed weight
    ``grid_alpha`` on the auxiliary loss), ``gclb``, ``srpr``, ``d4am``,
    ``gr``, ``gr-angle``, ``gr-scale``, ``pcgrad``. Arguments that a rule
    does not use are ignored.

    Arguments
    ---------
    name : str
        One of :data:`RULE_NAMES`.
    grid_alpha : float
        GRID's fixed weight.
    k : float
        Gradient Remedy's rescale threshold.
    per_tensor : bool, optional
        Gradient Remedy / PCGrad per parameter tensor; None: each rule's
        own default (Gradient Remedy per tensor, as the official code;
        PCGrad on the whole vector, as Yu et al.).
    srpr_init, srpr_beta, srpr_window : float, float, int
        :class:`SRPRWeighter` constants.
    langevin : bool
        Langevin noise for ``srpr`` / ``d4am``.
    num_samples : int, optional
        Size of the speech-only set (Langevin noise).

    Returns
    -------
    CombinationRule

    Example
    -------
    >>> make_rule("gr-angle")
    GradientRemedy()
    >>> make_rule("d4am").weighter.alpha.item()
    1.0
    >>> make_rule("adam")
    Traceback (most recent call last):
    ...
    ValueError: unknown surgery rule 'adam'; choose one of sum, grid, ...
    """

    def weighter():
        return SRPRWeighter(init=srpr_init, beta=srpr_beta, window=srpr_window)

    key = name.lower().replace("_", "-")
    if key in ("sum", "mtl"):
        return Sum()
    if key == "grid":
        return Weighted(1.0, grid_alpha)
    if key == "gclb":
        return GCLB()
    if key == "srpr":
        return SRPR(weighter(), langevin=langevin, num_samples=num_samples)
    if key == "d4am":
        return D4AM(weighter(), langevin=langevin, num_samples=num_samples)
    if key in ("gr", "gr-angle", "gr-scale"):
        return GradientRemedy(
            k=k,
            angle=key != "gr-scale",
            scale=key != "gr-angle",
            per_tensor=True if per_tensor is None else per_tensor,
        )
    if key == "pcgrad":
        return PCGrad(per_tensor=bool(per_tensor))
    raise ValueError(
        f"unknown surgery rule {name!r}; choose one of {', '.join(RULE_NAMES)}"
    )
