"""Crowd models ("teachers"): a classifier plus a per-worker noise model.

A crowd model explains answer ``c`` of worker ``r`` on item ``i`` with

    P(c | x_i, r) = noise_r( p(x_i) ),   p(x) = softmax(classifier(x)),

and is trained on the observed answers only (masked crowd NLL,
:func:`kdcrowd_core.losses.crowd_nll`).  All per-answer computations take the
answer triples of a batch as three int tensors — ``a_item`` (positions of the
answers' items *within the batch*), ``a_worker``, ``a_label`` — never an
items x workers array.

Registered names (:func:`build_crowd_model`):

- ``"prob-transition"``: probability space, ``P(c|x,r) = sum_j p_j(x) T_r[j, c]``,
  ``T_r = row-softmax(W_r)``, ``W_r`` initialised at ``log`` of the Dawid-Skene
  estimate (or a diagonal-dominant matrix); optional trace regulariser.
- ``"crowdlayer-mw" | "crowdlayer-vw" | "crowdlayer-vb" | "crowdlayer-vw+b"``:
  CrowdLayer (Rodrigues & Pereira 2018): worker logits ``o_r = p(x) W_r``
  (MW, K x K matrix, init identity), ``p * w_r`` (VW), ``p + b_r`` (VB), ``p * w_r + b_r`` (VW+B);
  ``P(c|x,r) = softmax(o_r)``.
- ``"conal"``: CoNAL (Chu et al. 2021): ``o = g * (p W_c) + (1 - g) * (p W_r)``
  with a common ``W_c``, individual ``W_r`` (init identity) and a gate
  ``g = sigmoid(<u_r, v(x)>)`` (worker embedding ``u_r``, item embedding
  ``v(x) = Linear(standardised x)``); penalty ``-beta * sum_r ||W_r - W_c||_F``.
- ``"aggnet"``: AggNet-style EM (Albarqouni et al. 2016): worker matrices are not
  learned by gradient but re-estimated in closed form (``T_r[j, c] ∝ alpha +
  sum q_i[j]``) from the posteriors ``q_i ∝ p(x_i) prod T_r[:, c]``, and the
  classifier is trained on those posteriors (``em = True``; the trainer runs the
  E/M steps, see :mod:`kdcrowd_core.kd`).

Every model gives, for the posterior ``q_i ∝ p(x_i) prod_{(i,r,c)} T[j, c]``,
:meth:`CrowdModel.answer_log_lik` = ``log P(c_a | y = j, x_i, r)`` (A, K), and
its (effective) worker matrices ``[r, true j, answer c]``.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CrowdDataError
from ..losses import trace_regulariser
from .heads import Head

_TEACHERS: dict[str, type] = {}


def register_crowd_model(name: str):
    def deco(cls):
        cls.name = name
        _TEACHERS[name] = cls
        return cls
    return deco


def available_crowd_models() -> list[str]:
    return list(_TEACHERS)


def build_crowd_model(name: str, classifier: Head, n_workers: int, n_classes: int,
                      init_matrices: np.ndarray | None = None, **kw) -> CrowdModel:
    """Instantiate a registered crowd model around ``classifier``.

    ``init_matrices`` (R, K, K) — e.g. Dawid-Skene's — initialise the models that use
    them (``prob-transition``, ``aggnet``); the others start at the identity.
    Extra keyword arguments go to the model (``trace_lambda``, ``conal_beta``, ``alpha``...).
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in _TEACHERS:
        raise CrowdDataError(f"unknown teacher {name!r}.", hint=f"choose one of {available_crowd_models()}.")
    return _TEACHERS[key](classifier, n_workers, n_classes, init_matrices=init_matrices, **kw)


def _diag_dominant(R: int, K: int, acc: float = 0.7) -> np.ndarray:
    off = (1.0 - acc) / max(K - 1, 1)
    T = np.full((K, K), off)
    np.fill_diagonal(T, acc)
    return np.broadcast_to(T, (R, K, K)).copy()


def _clean_matrices(T: np.ndarray | None, R: int, K: int, floor: float = 1e-3) -> np.ndarray:
    if T is None:
        return _diag_dominant(R, K)
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (R, K, K):
        raise CrowdDataError(f"init_matrices must have shape (R, K, K) = {(R, K, K)}, got {T.shape}.")
    T = np.clip(T, floor, None)
    return T / T.sum(axis=2, keepdims=True)


#: Largest (answers x K x K) block of per-answer matrices gathered at once; past it, answers go worker by worker.
_GATHER_CELLS = 1 << 22
#: Largest (R * K, K) log-likelihood table (:meth:`CrowdModel.log_lik_table`) the posterior builds.
_TABLE_CELLS = 1 << 24


def mix_through_matrices(p: torch.Tensor, worker: torch.Tensor, matrices) -> torch.Tensor:
    """``out[a] = p[a] @ T[worker[a]]`` (A, K), with ``matrices(idx) -> T[idx]`` (len(idx), K, K).

    Few answers or classes: one gather of the answers' matrices and a batched product.  Many classes
    (1,000 classes: 4 MB per answer's matrix): the answers grouped by worker, one (n, K) @ (K, K)
    product per worker of the batch, so no (A, K, K) array.
    """
    A, K = p.shape
    if A * K * K <= _GATHER_CELLS:
        T = matrices(worker)
        return torch.bmm(p.unsqueeze(1).to(T.dtype), T).squeeze(1)
    order = torch.argsort(worker, stable=True)
    uniq, counts = torch.unique_consecutive(worker[order], return_counts=True)
    pieces, start = [], 0
    for r, n in zip(uniq.tolist(), counts.tolist()):
        idx = order[start:start + n]
        T = matrices(torch.tensor([r], device=worker.device))[0]
        pieces.append(p[idx].to(T.dtype) @ T)
        start += n
    out = torch.cat(pieces)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(A, device=order.device)
    return out[inverse]


class CrowdModel(nn.Module):
    """Base: ``classifier`` (a :class:`~kdcrowd_core.models.heads.Head`) + a noise model.

    Subclasses implement :meth:`answer_log_probs` and :meth:`answer_log_lik`
    and :meth:`worker_matrices`.
    """

    name: ClassVar[str] = "base"
    em: ClassVar[bool] = False          # closed-form worker matrices (AggNet)
    needs_item_embedding: ClassVar[bool] = False

    def __init__(self, classifier: Head, n_workers: int, n_classes: int, **_kw):
        super().__init__()
        self.classifier = classifier
        self.n_workers, self.n_classes = int(n_workers), int(n_classes)

    # ------------------------------------------------------------------ parts
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier logits (B, K)."""
        return self.classifier(x)

    def item_embedding(self, x: torch.Tensor) -> torch.Tensor | None:
        """Per-item representation the noise model needs (CoNAL's gate), or None."""
        return None

    def transition_parameters(self) -> list[nn.Parameter]:
        """Parameters of the noise model (they may get their own learning rate)."""
        cls_ids = {id(p) for p in self.classifier.parameters()}
        return [p for p in self.parameters() if id(p) not in cls_ids]

    def answer_log_probs(self, probs: torch.Tensor, a_item: torch.Tensor, a_worker: torch.Tensor,
                         emb: torch.Tensor | None = None) -> torch.Tensor:
        """``log P(answer = c | x_i, r)`` (A, K) for each answer ``(a_item, a_worker)``.

        ``probs`` (B, K) classifier probabilities of the batch; ``a_item`` indexes rows of it.
        """
        raise NotImplementedError

    def answer_log_lik(self, a_worker: torch.Tensor, a_label: torch.Tensor,
                       emb_a: torch.Tensor | None = None) -> torch.Tensor:
        """``log P(answer = a_label | y = j, r)`` (A, K) for every class ``j`` (the posterior's factors).

        ``emb_a`` (A, e): the item embedding of each answer's item (CoNAL only).
        """
        raise NotImplementedError

    def worker_matrices(self, gate: torch.Tensor | None = None) -> torch.Tensor:
        """(Effective) worker matrices (R, K, K) ``[r, true j, answer c]``, rows sum to one."""
        raise NotImplementedError

    def log_lik_table(self, max_cells: int = _TABLE_CELLS) -> torch.Tensor | None:
        """``log P(answer = c | y = j, r)`` for every worker and answer: (R * K, K), row ``r * K + c``, or None
        when the noise model depends on the item (CoNAL) or the table would exceed ``max_cells``.  The
        posterior's answer term of an item is then the sum of its answers' rows (one ``embedding_bag``)."""
        R, K = self.n_workers, self.n_classes
        if self.needs_item_embedding or R * K * K > max_cells:
            return None
        dev = next(self.parameters()).device
        w = torch.arange(R, device=dev).repeat_interleave(K)
        c = torch.arange(K, device=dev).repeat(R)
        return self.answer_log_lik(w, c).float().contiguous()

    def penalty(self) -> torch.Tensor:
        """Regulariser added to the loss (0 by default)."""
        return torch.zeros((), device=next(self.parameters()).device)

    def batch_loss(self, xb: torch.Tensor, logits: torch.Tensor, a_local: torch.Tensor, a_worker: torch.Tensor,
                   a_label: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor | None:
        """A model's own loss for a mini-batch (features ``xb``, classifier ``logits``, the batch's answers),
        or None for the default ``crowd_nll(answer_log_probs) + penalty()`` (GeoCrowdNet, annot-mix)."""
        return None


@register_crowd_model("prob-transition")
class ProbTransition(CrowdModel):
    """``P(c | x, r) = sum_j p_j(x) T_r[j, c]``, ``T_r = row-softmax(W_r)``.

    Parameters: ``init_matrices`` (R, K, K) (log taken, floor 1e-3) or a diagonal-dominant
    start; ``trace_lambda`` weight of ``sum_r trace(T_r)`` (Tanno et al.), default 0.
    """

    def __init__(self, classifier: Head, n_workers: int, n_classes: int, init_matrices=None,
                 trace_lambda: float = 0.0, **kw):
        super().__init__(classifier, n_workers, n_classes)
        T0 = _clean_matrices(init_matrices, self.n_workers, self.n_classes)
        self.W = nn.Parameter(torch.from_numpy(np.log(T0)).float())
        self.trace_lambda = float(trace_lambda)

    def log_T(self) -> torch.Tensor:
        return F.log_softmax(self.W, dim=2)

    def answer_log_probs(self, probs, a_item, a_worker, emb=None):
        pc = mix_through_matrices(probs[a_item], a_worker, lambda w: F.softmax(self.W[w], dim=2))
        return torch.log(pc.clamp_min(1e-12))

    def answer_log_lik(self, a_worker, a_label, emb_a=None):
        return self.log_T()[a_worker, :, a_label]

    def worker_matrices(self, gate=None):
        return F.softmax(self.W, dim=2)

    def penalty(self):
        if self.trace_lambda == 0:
            return torch.zeros((), device=self.W.device)
        return self.trace_lambda * trace_regulariser(F.softmax(self.W, dim=2)) / self.n_workers


@register_crowd_model("aggnet")
class AggNet(CrowdModel):
    """EM crowd model: closed-form worker matrices ``T`` (a buffer), classifier trained on posteriors.

    ``alpha``: Dirichlet smoothing of the M-step counts (default 1.0).
    """

    em = True

    def __init__(self, classifier: Head, n_workers: int, n_classes: int, init_matrices=None,
                 alpha: float = 1.0, **kw):
        super().__init__(classifier, n_workers, n_classes)
        T0 = _clean_matrices(init_matrices, self.n_workers, self.n_classes, floor=1e-6)
        self.register_buffer("T", torch.from_numpy(T0).float())
        self.alpha = float(alpha)

    def answer_log_probs(self, probs, a_item, a_worker, emb=None):
        pc = mix_through_matrices(probs[a_item], a_worker, lambda w: self.T[w])
        return torch.log(pc.clamp_min(1e-12))

    def answer_log_lik(self, a_worker, a_label, emb_a=None):
        if self.T.numel() <= a_worker.shape[0] * self.n_classes:   # log of the R x K x K table, then gather
            return torch.log(self.T.clamp_min(1e-12))[a_worker, :, a_label]
        return torch.log(self.T[a_worker, :, a_label].clamp_min(1e-12))

    def worker_matrices(self, gate=None):
        return self.T

    def log_lik_table(self, max_cells: int = _TABLE_CELLS) -> torch.Tensor | None:
        R, K = self.n_workers, self.n_classes
        if R * K * K > max_cells:
            return None
        return torch.log(self.T.clamp_min(1e-12)).transpose(1, 2).reshape(R * K, K)

    @torch.no_grad()
    def m_step(self, q: torch.Tensor, item: torch.Tensor, worker: torch.Tensor, label: torch.Tensor,
               by_key: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """``T_r[j, c] ∝ alpha + sum over answers (i, r, c) of q_i[j]`` (all answers, q (N, K)).

        ``by_key``: the answers' items ordered by ``worker * K + label`` and where each of the ``R * K`` keys
        starts (``_Answers.by_key``): the counts are then one ``embedding_bag`` over ``q``, no (answers, K) array."""
        R, K = self.n_workers, self.n_classes
        if by_key is not None:
            counts = F.embedding_bag(by_key[0], q.float(), by_key[1], mode="sum")
        else:
            counts = torch.zeros(R * K, K, dtype=torch.float32, device=q.device)
            key = worker * K + label
            step = max(1, _GATHER_CELLS // max(K, 1))    # q[item] is answers x K: a chunk of answers at a time
            for s in range(0, key.numel(), step):
                counts.index_add_(0, key[s:s + step], q[item[s:s + step]].float())
        # in place: with many classes each R x K x K temporary is large (R=100, K=1000: 400 MB)
        T = counts.add_(self.alpha).view(R, K, K).transpose(1, 2)   # [r, j, c]
        self.T.copy_(T.div_(T.sum(dim=2, keepdim=True)))


class _CrowdLayerBase(CrowdModel):
    def _logits(self, p: torch.Tensor, a_worker: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def answer_log_probs(self, probs, a_item, a_worker, emb=None):
        return F.log_softmax(self._logits(probs[a_item], a_worker), dim=1)

    def _class_rows(self) -> torch.Tensor:
        """Worker logits for one-hot inputs: (R, K, K), row j = o_r(e_j)."""
        raise NotImplementedError

    def answer_log_lik(self, a_worker, a_label, emb_a=None):
        return F.log_softmax(self._class_rows(), dim=2)[a_worker, :, a_label]

    def worker_matrices(self, gate=None):
        return F.softmax(self._class_rows(), dim=2)


@register_crowd_model("crowdlayer-mw")
class CrowdLayerMW(_CrowdLayerBase):
    """CrowdLayer MW: ``o_r = p W_r`` with ``W_r`` (K, K) initialised at the identity."""

    def __init__(self, classifier, n_workers, n_classes, init_matrices=None, **kw):
        super().__init__(classifier, n_workers, n_classes)
        self.W = nn.Parameter(torch.eye(self.n_classes).repeat(self.n_workers, 1, 1))

    def _logits(self, p, a_worker):
        return torch.bmm(p.unsqueeze(1).to(self.W.dtype), self.W[a_worker]).squeeze(1)

    def _class_rows(self):
        return self.W


@register_crowd_model("crowdlayer-vw")
class CrowdLayerVW(_CrowdLayerBase):
    """CrowdLayer VW: ``o_r = p * w_r`` (w_r init ones)."""

    def __init__(self, classifier, n_workers, n_classes, init_matrices=None, **kw):
        super().__init__(classifier, n_workers, n_classes)
        self.w = nn.Parameter(torch.ones(self.n_workers, self.n_classes))

    def _logits(self, p, a_worker):
        return p * self.w[a_worker]

    def _class_rows(self):
        return torch.diag_embed(self.w)


@register_crowd_model("crowdlayer-vb")
class CrowdLayerVB(_CrowdLayerBase):
    """CrowdLayer VB: ``o_r = p + b_r`` (b_r init zeros)."""

    def __init__(self, classifier, n_workers, n_classes, init_matrices=None, **kw):
        super().__init__(classifier, n_workers, n_classes)
        self.b = nn.Parameter(torch.zeros(self.n_workers, self.n_classes))

    def _logits(self, p, a_worker):
        return p + self.b[a_worker]

    def _class_rows(self):
        eye = torch.eye(self.n_classes, device=self.b.device)
        return eye.unsqueeze(0) + self.b.unsqueeze(1)


@register_crowd_model("crowdlayer-vw+b")
class CrowdLayerVWB(_CrowdLayerBase):
    """CrowdLayer VW+B: ``o_r = p * w_r + b_r``."""

    def __init__(self, classifier, n_workers, n_classes, init_matrices=None, **kw):
        super().__init__(classifier, n_workers, n_classes)
        self.w = nn.Parameter(torch.ones(self.n_workers, self.n_classes))
        self.b = nn.Parameter(torch.zeros(self.n_workers, self.n_classes))

    def _logits(self, p, a_worker):
        return p * self.w[a_worker] + self.b[a_worker]

    def _class_rows(self):
        return torch.diag_embed(self.w) + self.b.unsqueeze(1)


@register_crowd_model("conal")
class CoNAL(CrowdModel):
    """CoNAL: common + individual confusion, mixed per (item, worker) by a gate.

    ``o = g * (p W_c) + (1 - g) * (p W_r)``, ``g = sigmoid(<u_r, v(x)>)``,
    ``v(x) = Linear(d, emb_dim)(standardised x)``; penalty ``-beta sum_r ||W_r - W_c||_F``
    (``conal_beta``, default 1e-5 as in the authors' code).
    """

    needs_item_embedding = True

    def __init__(self, classifier, n_workers, n_classes, init_matrices=None, conal_beta: float = 1e-5,
                 emb_dim: int = 20, **kw):
        super().__init__(classifier, n_workers, n_classes)
        K, R = self.n_classes, self.n_workers
        self.Wc = nn.Parameter(torch.eye(K))
        self.W = nn.Parameter(torch.eye(K).repeat(R, 1, 1))
        self.item_proj = nn.Linear(classifier.n_features, emb_dim)
        self.worker_emb = nn.Parameter(torch.randn(R, emb_dim) * 0.1)
        self.beta = float(conal_beta)

    def item_embedding(self, x):
        return self.item_proj(self.classifier.standardize(x))

    def gate(self, emb_a: torch.Tensor, a_worker: torch.Tensor) -> torch.Tensor:
        """(A,) gate in (0, 1): weight of the common matrix for each answer."""
        return torch.sigmoid((emb_a * self.worker_emb[a_worker]).sum(dim=1))

    def answer_log_probs(self, probs, a_item, a_worker, emb=None):
        p = probs[a_item]
        g = self.gate(emb[a_item], a_worker).unsqueeze(1)
        common = p @ self.Wc
        indiv = torch.bmm(p.unsqueeze(1), self.W[a_worker]).squeeze(1)
        return F.log_softmax(g * common + (1 - g) * indiv, dim=1)

    def answer_log_lik(self, a_worker, a_label, emb_a=None):
        if emb_a is None:
            g = torch.full((a_worker.shape[0], 1, 1), 0.5, device=self.W.device)
        else:
            g = self.gate(emb_a, a_worker).view(-1, 1, 1)
        rows = g * self.Wc.unsqueeze(0) + (1 - g) * self.W[a_worker]       # (A, K, K)
        return F.log_softmax(rows, dim=2)[torch.arange(a_worker.shape[0], device=a_worker.device), :, a_label]

    def worker_matrices(self, gate=None):
        """Effective matrices with each worker's mean gate (``gate`` (R,), default 0.5)."""
        if gate is None:
            gate = torch.full((self.n_workers,), 0.5, device=self.W.device)
        g = gate.view(-1, 1, 1).to(self.W.dtype)
        return F.softmax(g * self.Wc.unsqueeze(0) + (1 - g) * self.W, dim=2)

    def penalty(self):
        d = (self.W - self.Wc.unsqueeze(0)).flatten(1).norm(dim=1).sum()
        return -self.beta * d
