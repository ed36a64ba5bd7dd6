"""One-coin Dawid-Skene and GLAD: one accuracy per worker (GLAD: times item easiness)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from ..data import CrowdData
from ..device import resolve_device
from ..errors import CrowdDataError
from ._sparse import AnswerOperator, cpu_threads
from .base import BaseInference, register
from .dawid_skene import EPS, center_rows, confusion_counts, e_step_logits, elbo, log_prior, posteriors


def _gold_tensors(data: CrowdData, use_gold: bool, device):
    if not (use_gold and data.has_gold):
        return None, None
    m = data.gold >= 0
    return (torch.from_numpy(np.nonzero(m)[0]).to(device), torch.from_numpy(data.gold[m]).to(device))


def _clamp(q: torch.Tensor, gi, gv) -> torch.Tensor:
    if gi is not None:
        q[gi] = 0
        q[gi, gv] = 1
    return q


def _coin_matrices(acc: np.ndarray, K: int) -> np.ndarray:
    """(R,) accuracies -> (R, K, K) matrices ``[r, true, answer]``: acc on the diagonal, the rest shared."""
    off = (1 - acc) / (K - 1) if K > 1 else np.zeros_like(acc)
    T = np.repeat(off[:, None, None], K, axis=1).repeat(K, axis=2)
    T[:, np.arange(K), np.arange(K)] = acc[:, None]
    return T


def coin_log_table(skill: torch.Tensor, K: int) -> torch.Tensor:
    """(R,) skills -> ``log T`` in the DS layout ``(R*K, K)``: row ``r*K+c``, column j.

    ``T = skill`` when ``c == j``, else ``(1 - skill) / (K - 1)``; entries clipped to
    ``[EPS, 1 - EPS]`` (Crowd-Kit's one-coin errors).
    """
    R = skill.shape[0]
    off = (1 - skill) / (K - 1) if K > 1 else torch.zeros_like(skill)
    T = off[:, None, None].expand(R, K, K).clone()
    idx = torch.arange(K, device=skill.device)
    T[:, idx, idx] = skill[:, None]
    return T.clamp(EPS, 1 - EPS).log().reshape(R * K, K)


@register("one_coin_dawid_skene", "one_coin", "onecoin", "one_coin_ds", defaults={"alpha": 1.0})
@dataclass(repr=False)
class OneCoinDawidSkene(BaseInference):
    """One-coin Dawid-Skene: worker r is right with probability ``s_r``, else uniform over the other classes.

    With default arguments this is Crowd-Kit's ``OneCoinDawidSkene``: majority-vote start,
    M-step ``s_r`` = mean over r's answers of ``q_i[c]`` (with ``alpha``:
    ``(alpha + sum) / (2 alpha + n_r)``; ``get_method("one_coin")`` uses ``alpha=1``),
    prior = mean of ``q``, loss = ELBO per answer, stop when it improves by less than ``tol``.
    It is DS's E-step with a one-parameter matrix per worker.

    Fitted: ``skills_`` (Series indexed by worker, name ``skill``), ``errors_``, ``priors_``,
    ``worker_matrices_`` (the implied K x K matrices), ``prior_``, ``loss_history_``, ``n_iter_``.
    """

    n_iter: int = 100
    tol: float = 1e-5
    alpha: float = 0.0
    use_gold: bool = True
    device: str = "auto"
    callback: Callable[[int, float], None] | None = field(default=None, compare=False)

    def fit(self, data: CrowdData | pd.DataFrame, true_labels: pd.Series | None = None) -> OneCoinDawidSkene:
        """Fit; ``true_labels`` (Series indexed by task) clamps gold (an addition to Crowd-Kit)."""
        self._fit_frame(data, true_labels)
        if self.data_ is None:
            self.priors_ = pd.Series(dtype=float, name="prior")
            self.skills_ = pd.Series(dtype=float, name="skill")
            self.loss_history_ = []
        return self

    def _fit(self, data: CrowdData) -> np.ndarray:
        with cpu_threads(data.n_answers):
            return self._fit_coin(data)

    def _fit_coin(self, data: CrowdData) -> np.ndarray:
        if self.n_iter < 0:
            raise CrowdDataError("n_iter must be 0 or more.")
        dev = resolve_device(self.device)
        dt = torch.float32 if dev.type == "mps" else torch.float64
        op = AnswerOperator(data, dev, dt)
        K, R = data.n_classes, data.n_workers
        gi, gv = _gold_tensors(data, self.use_gold, dev)
        n_r = torch.from_numpy(data.answers_per_worker()).to(dev, dt)
        diag = torch.arange(K, device=dev)

        def m_step(q):
            correct = confusion_counts(op, q).reshape(R, K, K)[:, diag, diag].sum(dim=1)
            skill = (correct + self.alpha) / (n_r + 2 * self.alpha).clamp_min(1e-12)
            logT, shift = center_rows(coin_log_table(skill, K))
            return skill, logT, shift

        q = _clamp(op.soft_mv.clone(), gi, gv)
        log_pi = log_prior(q)
        skill, logTc, shift = m_step(q)
        g = e_step_logits(op, logTc, log_pi)
        extra_w = torch.from_numpy(data.answers_per_item() - 1.0).to(dev, dt)
        hist: list[float] = []
        loss = -math.inf
        it = 0
        for it in range(1, self.n_iter + 1):
            q = _clamp(posteriors(g), gi, gv)
            log_pi = log_prior(q)
            skill, logTc, shift = m_step(q)
            g = e_step_logits(op, logTc, log_pi)
            new_loss = elbo(q, g, float((op.key_counts.to(dt) * shift).sum()), log_pi, extra_w) / data.n_answers
            hist.append(new_loss)
            if self.callback is not None:
                self.callback(it, new_loss)
            if new_loss - loss < self.tol:
                break
            loss = new_loss
        a = skill.double().cpu().numpy()
        self.skills_ = pd.Series(a, index=pd.Index(data.worker_ids, name="worker"), name="skill")
        self.worker_matrices_ = np.clip(_coin_matrices(a, K), EPS, 1 - EPS)
        self.prior_ = log_pi.exp().double().cpu().numpy()
        self.priors_ = pd.Series(self.prior_, index=pd.Index(data.classes, name="label"), name="prior")
        self.loss_history_ = self.loglik_history_ = hist
        self.n_iter_ = it
        return q.double().cpu().numpy()


def _series(values, default: float, index: pd.Index, what: str) -> np.ndarray:
    """Per-worker / per-task prior means: a Series aligned on ``index`` (missing -> default) or None."""
    if values is None:
        return np.full(len(index), default)
    if not isinstance(values, pd.Series):
        raise CrowdDataError(f"{what} must be a pandas Series indexed by {index.name or 'id'}.")
    return values.reindex(index).fillna(default).to_numpy(dtype=np.float64)


@register("glad")
@dataclass(repr=False)
class GLAD(BaseInference):
    """GLAD (Whitehill et al., NIPS 2009), multi-class, as Crowd-Kit's ``GLAD``.

    Answer a = (i, r, c) is correct with probability ``sigmoid(alpha_r * exp(beta_i))``:
    ``alpha_r`` the worker's ability (negative = adversarial), ``exp(beta_i)`` the item's
    easiness; a wrong answer is uniform over the other K - 1 classes.  Class priors are
    fixed (uniform, or ``labels_priors``).  EM: exact E-step; the M-step maximises the
    expected complete log-likelihood plus Gaussian priors ``alpha ~ N(alphas_priors_mean, 1)``,
    ``beta ~ N(betas_priors_mean, 1)`` (means 1 by default) with up to ``m_step_max_iter``
    L-BFGS steps (Crowd-Kit uses conjugate gradients) to gradient tolerance ``m_step_tol``.
    Starts from ``alpha = beta = 1``; stops when Q per (answer, class) improves by less than ``tol``.

    Fitted: ``alphas_`` (Series by worker, name ``alpha``), ``betas_`` (Series by task, name
    ``beta``), ``priors_``, ``probas_``, ``labels_``, ``loss_history_``; and kdcrowd's
    ``abilities_`` (= ``alphas_``), ``difficulties_`` (``exp(-beta)``: larger = harder),
    ``worker_matrices_`` (implied by each worker's mean accuracy).
    """

    n_iter: int = 100
    tol: float = 1e-5
    silent: bool = True
    labels_priors: pd.Series | None = None
    alphas_priors_mean: pd.Series | None = None
    betas_priors_mean: pd.Series | None = None
    m_step_max_iter: int = 25
    m_step_tol: float = 1e-2
    use_gold: bool = True
    device: str = "auto"
    callback: Callable[[int, float], None] | None = field(default=None, compare=False)

    def fit(self, data: CrowdData | pd.DataFrame, true_labels: pd.Series | None = None) -> GLAD:
        """Fit; ``true_labels`` (Series indexed by task) clamps gold (an addition to Crowd-Kit)."""
        self._fit_frame(data, true_labels)
        if self.data_ is None:
            self.priors_ = pd.Series(dtype=float, name="prior")
            self.alphas_ = pd.Series(dtype=float, name="alpha")
            self.betas_ = pd.Series(dtype=float, name="beta")
            self.loss_history_ = []
        return self

    def _fit(self, data: CrowdData) -> np.ndarray:
        with cpu_threads(data.n_answers):
            return self._fit_glad(data)

    def _fit_glad(self, data: CrowdData) -> np.ndarray:
        if self.n_iter < 0:
            raise CrowdDataError("n_iter must be 0 or more.")
        dev = resolve_device(self.device)
        dt = torch.float32 if dev.type == "mps" else torch.float64
        K, N, R = data.n_classes, data.n_items, data.n_workers
        gi, gv = _gold_tensors(data, self.use_gold, dev)
        item = torch.from_numpy(data.item).to(dev)
        worker = torch.from_numpy(data.worker).to(dev)
        flat = torch.from_numpy(data.item * K + data.label).to(dev)
        log_wrong = math.log(K - 1) if K > 1 else 0.0
        if self.labels_priors is not None:
            pri = _series(self.labels_priors, 0.0, data.classes, "labels_priors")
            if not (pri > 0).any():
                raise CrowdDataError("labels_priors gives no class a positive prior.")
        else:
            pri = np.full(K, 1.0 / K)
        log_pi = torch.from_numpy(np.log(np.clip(pri / pri.sum(), EPS, None))).to(dev, dt)
        mu_a = torch.from_numpy(_series(self.alphas_priors_mean, 1.0, data.worker_ids, "alphas_priors_mean")).to(dev, dt)
        mu_b = torch.from_numpy(_series(self.betas_priors_mean, 1.0, data.item_ids, "betas_priors_mean")).to(dev, dt)
        alpha = torch.ones(R, dtype=dt, device=dev)
        beta = torch.ones(N, dtype=dt, device=dev)
        n_cells = data.n_answers * K
        half_log_2pi = 0.5 * math.log(2 * math.pi)

        def e_step(a, b):
            z = a[worker] * b.exp()[item]
            log_s, log_f = torch.nn.functional.logsigmoid(z), torch.nn.functional.logsigmoid(-z) - log_wrong
            if K == 1:
                log_f = torch.zeros_like(log_s)
            g = torch.zeros(N * K, dtype=dt, device=dev).index_add_(0, flat, log_s - log_f).view(N, K)
            g += torch.zeros(N, dtype=dt, device=dev).index_add_(0, item, log_f)[:, None]
            g += log_pi
            return _clamp(posteriors(g), gi, gv)

        def q_value(a, b, p_correct):
            z = a[worker] * b.exp()[item]
            ll = (p_correct * torch.nn.functional.logsigmoid(z)
                  + (1 - p_correct) * (torch.nn.functional.logsigmoid(-z) - log_wrong)).sum()
            prior = -0.5 * ((a - mu_a) ** 2).sum() - 0.5 * ((b - mu_b) ** 2).sum() - (R + N) * half_log_2pi
            return ll + prior

        def m_step(a, b, q):
            p_correct = q.reshape(-1)[flat].detach()
            x = torch.cat([a, b]).detach().clone().requires_grad_(True)
            opt = torch.optim.LBFGS([x], max_iter=max(1, self.m_step_max_iter), tolerance_grad=self.m_step_tol,
                                    line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad()
                loss = -q_value(x[:R], x[R:], p_correct)
                loss.backward()
                return loss
            if self.m_step_max_iter > 0:
                opt.step(closure)
            x = x.detach()
            return x[:R].clone(), x[R:].clone(), float(q_value(x[:R], x[R:], p_correct))

        q = e_step(alpha, beta)
        hist: list[float] = []
        last = -math.inf
        it = 0
        for it in range(1, self.n_iter + 1):
            q = e_step(alpha, beta)
            alpha, beta, Q = m_step(alpha, beta, q)
            Q /= n_cells
            hist.append(Q)
            if self.callback is not None:
                self.callback(it, Q)
            if Q - last < self.tol:
                break
            last = Q
        a_np, b_np = alpha.double().cpu().numpy(), beta.double().cpu().numpy()
        self.alphas_ = pd.Series(a_np, index=pd.Index(data.worker_ids, name="worker"), name="alpha")
        self.betas_ = pd.Series(b_np, index=pd.Index(data.item_ids, name="task"), name="beta")
        self.abilities_ = self.alphas_
        self.difficulties_ = pd.Series(np.exp(-b_np), index=self.betas_.index, name="difficulty")
        with torch.no_grad():
            s = torch.sigmoid(alpha[worker] * beta.exp()[item])
            n_r = torch.from_numpy(data.answers_per_worker()).to(dev, dt).clamp_min(1)
            mean_acc = torch.zeros(R, device=dev, dtype=dt).index_add_(0, worker, s) / n_r
        self.worker_matrices_ = _coin_matrices(mean_acc.double().cpu().numpy(), K)
        self.prior_ = log_pi.exp().double().cpu().numpy()
        self.priors_ = pd.Series(self.prior_, index=pd.Index(data.classes, name="label"), name="prior")
        self.loss_history_ = self.loglik_history_ = hist
        self.n_iter_ = it
        return q.detach().double().cpu().numpy()
