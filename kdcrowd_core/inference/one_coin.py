"""One-coin Dawid-Skene and GLAD: one accuracy per worker (GLAD: times item easiness)."""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from ..data import CrowdData
from ..device import resolve_device
from ._sparse import soft_majority
from .base import BaseInference, register

_EPS = 1e-6


class _CoinEM:
    """Shared E-step for models where answer a is correct with probability s_a.

    ``P(c_a | true j) = s_a`` if ``c_a == j`` else ``(1 - s_a) / (K - 1)``.
    ``log q_i[j] = log pi_j + sum_a log((1-s_a)/(K-1)) + sum_{a: c_a = j} [log s_a - log((1-s_a)/(K-1))]``
    computed with two 1-D scatter-adds over the answers.
    """

    def __init__(self, data: CrowdData, device: torch.device, dtype: torch.dtype):
        self.N, self.K = data.n_items, data.n_classes
        self.item = torch.from_numpy(data.item).to(device)
        self.worker = torch.from_numpy(data.worker).to(device)
        self.flat = torch.from_numpy(data.item * data.n_classes + data.label).to(device)
        self.device, self.dtype = device, dtype

    def e_step(self, s: torch.Tensor, log_prior: torch.Tensor, gold_idx=None, gold_val=None):
        K = self.K
        s = s.clamp(_EPS, 1 - _EPS)
        wrong = torch.log((1 - s) / (K - 1))
        bonus = torch.log(s) - wrong
        logq = torch.zeros(self.N * K, dtype=self.dtype, device=self.device)
        logq.index_add_(0, self.flat, bonus)
        logq = logq.view(self.N, K)
        base = torch.zeros(self.N, dtype=self.dtype, device=self.device).index_add_(0, self.item, wrong)
        logq = logq + base[:, None] + log_prior
        lse = torch.logsumexp(logq, dim=1, keepdim=True)
        q = (logq - lse).exp()
        if gold_idx is not None:
            q[gold_idx] = 0
            q[gold_idx, gold_val] = 1
        return q, float(lse.sum())

    def p_correct(self, q: torch.Tensor) -> torch.Tensor:
        """Posterior probability that each answer is correct: ``q[i_a, c_a]``."""
        return q.reshape(-1)[self.flat]


def _gold_tensors(data: CrowdData, use_gold: bool, device):
    if not (use_gold and data.has_gold):
        return None, None
    m = data.gold >= 0
    return (torch.from_numpy(np.nonzero(m)[0]).to(device), torch.from_numpy(data.gold[m]).to(device))


def _coin_matrices(acc: np.ndarray, K: int) -> np.ndarray:
    T = np.repeat(((1 - acc) / (K - 1))[:, None, None], K, axis=1).repeat(K, axis=2)
    T[:, np.arange(K), np.arange(K)] = acc[:, None]
    return T


@register("one_coin_dawid_skene", "one_coin", "onecoin", "one_coin_ds")
@dataclass(repr=False)
class OneCoinDawidSkene(BaseInference):
    """One-coin Dawid-Skene: worker r is right with probability ``a_r``, else uniform over the other classes.

    M-step: ``a_r = (alpha + sum over r's answers of q_i[c]) / (2 alpha + n_r)``.
    Fitted: ``skills_`` (Series per worker), ``worker_matrices_`` (the implied K x K matrices),
    ``prior_``, ``loglik_history_``, ``n_iter_``.
    """

    n_iter: int = 100
    tol: float = 1e-5
    alpha: float = 1.0
    use_gold: bool = True
    device: str = "auto"
    callback: Callable[[int, float], None] | None = field(default=None, compare=False)

    def _fit(self, data: CrowdData) -> np.ndarray:
        dev = resolve_device(self.device)
        dt = torch.float32 if dev.type == "mps" else torch.float64
        em = _CoinEM(data, dev, dt)
        gi, gv = _gold_tensors(data, self.use_gold, dev)
        q = torch.from_numpy(soft_majority(data)).to(dev, dt)
        if gi is not None:
            q[gi] = 0
            q[gi, gv] = 1
        n_r = torch.from_numpy(data.answers_per_worker()).to(dev, dt)
        hist: list[float] = []
        it = 0
        for it in range(1, self.n_iter + 1):
            acc, log_prior = self._m(em, q, n_r)
            q, ll = em.e_step(acc[em.worker], log_prior, gi, gv)
            hist.append(ll / data.n_answers)
            if self.callback is not None:
                self.callback(it, hist[-1])
            if len(hist) > 1 and abs(hist[-1] - hist[-2]) < self.tol:
                break
        acc, log_prior = self._m(em, q, n_r)
        a = acc.cpu().numpy()
        self.skills_ = pd.Series(a, index=data.worker_ids, name="skill")
        self.worker_matrices_ = _coin_matrices(a, data.n_classes)
        self.prior_ = log_prior.exp().cpu().numpy()
        self.loglik_history_, self.n_iter_ = hist, it
        return q.cpu().numpy()

    def _m(self, em: _CoinEM, q, n_r):
        correct = torch.zeros_like(n_r).index_add_(0, em.worker, em.p_correct(q))
        acc = (correct + self.alpha) / (n_r + 2 * self.alpha)
        pri = q.sum(0).clamp_min(1e-12)
        return acc, (pri / pri.sum()).log()


@register("glad")
@dataclass(repr=False)
class GLAD(BaseInference):
    """GLAD (Whitehill et al., NIPS 2009), multi-class form.

    Answer a = (i, r, c) is correct with probability ``sigmoid(alpha_r * beta_i)`` where
    ``alpha_r`` is the worker's ability (negative = adversarial) and ``beta_i = exp(b_i) > 0``
    the item's easiness; otherwise uniform over the other K - 1 classes.
    EM: the E-step is exact; the M-step takes ``m_steps`` Adam steps on the expected
    complete log-likelihood with Gaussian priors ``alpha ~ N(1, 1)``, ``b ~ N(0, 1)``.

    Fitted: ``abilities_`` (Series per worker), ``difficulties_`` (Series per item: ``1 / beta_i``,
    larger = harder), ``worker_matrices_`` (implied by each worker's mean accuracy), ``prior_``.
    """

    n_iter: int = 100
    tol: float = 1e-5
    m_steps: int = 25
    lr: float = 0.1
    use_gold: bool = True
    device: str = "auto"
    callback: Callable[[int, float], None] | None = field(default=None, compare=False)

    def _fit(self, data: CrowdData) -> np.ndarray:
        dev = resolve_device(self.device)
        dt = torch.float32
        em = _CoinEM(data, dev, dt)
        gi, gv = _gold_tensors(data, self.use_gold, dev)
        q = torch.from_numpy(soft_majority(data)).to(dev, dt)
        if gi is not None:
            q[gi] = 0
            q[gi, gv] = 1
        K = data.n_classes
        alpha = torch.ones(data.n_workers, device=dev, dtype=dt, requires_grad=True)
        b = torch.zeros(data.n_items, device=dev, dtype=dt, requires_grad=True)
        opt = torch.optim.Adam([alpha, b], lr=self.lr)
        hist: list[float] = []
        it = 0
        log_prior = None
        for it in range(1, self.n_iter + 1):
            pc = em.p_correct(q).detach()
            pri = q.sum(0).clamp_min(1e-12)
            log_prior = (pri / pri.sum()).log()
            for _ in range(self.m_steps):
                opt.zero_grad(set_to_none=True)
                z = alpha[em.worker] * b.exp()[em.item]
                # expected complete log-likelihood of the answers
                ll = (pc * torch.nn.functional.logsigmoid(z)
                      + (1 - pc) * (torch.nn.functional.logsigmoid(-z) - np.log(K - 1))).sum()
                reg = 0.5 * ((alpha - 1) ** 2).sum() + 0.5 * (b ** 2).sum()
                loss = -(ll - reg) / data.n_answers
                loss.backward()
                opt.step()
            with torch.no_grad():
                s = torch.sigmoid(alpha[em.worker] * b.exp()[em.item])
                q, llv = em.e_step(s, log_prior, gi, gv)
            hist.append(llv / data.n_answers)
            if self.callback is not None:
                self.callback(it, hist[-1])
            if len(hist) > 1 and abs(hist[-1] - hist[-2]) < self.tol:
                break
        with torch.no_grad():
            s = torch.sigmoid(alpha[em.worker] * b.exp()[em.item])
            n_r = torch.from_numpy(data.answers_per_worker()).to(dev, dt).clamp_min(1)
            mean_acc = torch.zeros(data.n_workers, device=dev, dtype=dt).index_add_(0, em.worker, s) / n_r
        self.abilities_ = pd.Series(alpha.detach().cpu().numpy(), index=data.worker_ids, name="ability")
        self.difficulties_ = pd.Series(np.exp(-b.detach().cpu().numpy()), index=data.item_ids, name="difficulty")
        self.worker_matrices_ = _coin_matrices(mean_acc.cpu().numpy().astype(np.float64), K)
        self.prior_ = log_prior.exp().cpu().numpy()
        self.loglik_history_, self.n_iter_ = hist, it
        return q.detach().double().cpu().numpy()
