"""Recent learning-from-crowds peers, implemented from their papers in this package's crowd-model interface
(same classifier heads, same preprocessing, same trainer), registered by name with the other crowd models.

- ``"geocrowdnet-f"``: GeoCrowdNet (F) (Ibrahim, Nguyen & Fu, "Deep learning from crowdsourced labels:
  coupled cross-entropy minimization, identifiability, and regularization", ICLR 2023).  Coupled
  cross-entropy in probability space, ``P(c | x, r) = sum_j p_j(x) A_r[j, c]`` with ``A_r = row-softmax(W_r)``
  and ``W_r`` starting at the identity, plus the geometric regulariser on the classifier's outputs of the
  mini-batch, ``-geo_lambda * log det(F^T F)`` (``F`` = the batch's (B, K) class probabilities: it favours
  outputs that span the probability simplex, which makes the matrices identifiable).  As in the authors'
  code, a batch whose term is not finite or above 100 adds nothing.
- ``"annot-mix"``: annot-mix (Herde, Lührs, Huseljic & Sick, "Annot-Mix: learning with noisy class labels
  from multiple annotators via a mixup extension", ECAI 2024).  The annotator model gives a confusion
  matrix per (item, annotator) from the classifier's hidden representation of the item (gradient stopped)
  and an embedding of the annotator; ``P(c | x, r) = sum_j p_j(x) P_{x,r}[j, c]``.  Training mixes
  (input, annotator, answer) triples: for the answers of a mini-batch, ``x~ = l x + (1 - l) x'``,
  ``a~ = l e_r + (1 - l) e_r'`` (one-hot annotators), ``z~ = l e_c + (1 - l) e_c'`` with ``l ~ Beta(alpha,
  alpha)`` per answer and a random permutation of the batch's answers; the loss is the cross-entropy of
  ``z~`` and the predicted answer distribution of ``(x~, a~)``.  The diagonal of the confusion logits
  starts at the prior ``eta = 0.9`` (bias ``log(eta (K - 1) / (1 - eta))`` on the diagonal).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import crowd_nll
from .crowd import CrowdModel, ProbTransition, register_crowd_model
from .heads import Head


@register_crowd_model("geocrowdnet-f")
class GeoCrowdNetF(ProbTransition):
    """GeoCrowdNet (F): coupled cross-entropy + ``-geo_lambda * log det(F^T F)`` on the batch's outputs."""

    def __init__(self, classifier: Head, n_workers: int, n_classes: int, init_matrices=None,
                 geo_lambda: float = 0.01, **kw):
        super().__init__(classifier, n_workers, n_classes, init_matrices=None)
        with torch.no_grad():   # the paper's start: identity logits, not Dawid-Skene's matrices
            self.W.copy_(torch.eye(self.n_classes).repeat(self.n_workers, 1, 1))
        self.geo_lambda = float(geo_lambda)

    def batch_loss(self, xb, logits, a_local, a_worker, a_label, gen=None):
        probs = F.softmax(logits.float(), dim=1)
        loss = crowd_nll(self.answer_log_probs(probs, a_local, a_worker), a_label)
        if self.geo_lambda > 0 and probs.shape[0] >= self.n_classes:
            reg = -torch.logdet(probs.T @ probs)
            r = float(reg.detach())
            if math.isfinite(r) and r <= 100:
                loss = loss + self.geo_lambda * reg
        return loss


@register_crowd_model("annot-mix")
class AnnotMix(CrowdModel):
    """annot-mix: per-(item, annotator) confusion matrices, trained with mixup over answer triples."""

    needs_item_embedding = True

    def __init__(self, classifier: Head, n_workers: int, n_classes: int, init_matrices=None,
                 mix_alpha: float = 1.0, eta: float = 0.9, emb_dim: int = 16, ap_hidden: int = 64, **kw):
        super().__init__(classifier, n_workers, n_classes)
        K, R = self.n_classes, self.n_workers
        body = classifier.body
        d_hidden = body[-1].in_features if isinstance(body, nn.Sequential) and len(body) > 1 \
            else classifier.n_features
        self.embed_x = nn.Linear(d_hidden, emb_dim)
        self.embed_a = nn.Linear(R, emb_dim, bias=False)     # annotator one-hot (or mixed) -> embedding
        self.ap = nn.Sequential(nn.Linear(2 * emb_dim, ap_hidden), nn.ReLU(), nn.Linear(ap_hidden, K * K))
        with torch.no_grad():
            self.ap[-1].bias.copy_((math.log(eta * (K - 1) / (1 - eta)) * torch.eye(K)).flatten())
        self.mix_alpha = float(mix_alpha)

    # the classifier split into its hidden representation and its output layer
    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        z = self.classifier.standardize(x)
        body = self.classifier.body
        return body[:-1](z) if isinstance(body, nn.Sequential) and len(body) > 1 else z

    def _out(self, h: torch.Tensor) -> torch.Tensor:
        body = self.classifier.body
        return body[-1](h) if isinstance(body, nn.Sequential) and len(body) > 1 else body(h)

    def item_embedding(self, x):
        return self._hidden(x).detach()

    def _confusion_logits(self, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """(A, K, K) confusion logits ``[true j, answer c]`` from hidden item representations (A, d_hidden)
        and annotator vectors (A, R)."""
        e = torch.cat([self.embed_x(h.detach()), self.embed_a(a)], dim=1)
        return self.ap(e).view(-1, self.n_classes, self.n_classes)

    def answer_matrices(self, emb_a: torch.Tensor, a_worker: torch.Tensor) -> torch.Tensor:
        """(A, K, K) each answer's confusion matrix (rows sum to one)."""
        a = F.one_hot(a_worker, self.n_workers).to(emb_a.dtype)
        return F.softmax(self._confusion_logits(emb_a, a), dim=2)

    def answer_log_probs(self, probs, a_item, a_worker, emb=None):
        T = self.answer_matrices(emb[a_item], a_worker)
        pc = torch.bmm(probs[a_item].unsqueeze(1).to(T.dtype), T).squeeze(1)
        return torch.log(pc.clamp_min(1e-12))

    def answer_log_lik(self, a_worker, a_label, emb_a=None):
        a = F.one_hot(a_worker, self.n_workers).to(emb_a.dtype)
        lt = F.log_softmax(self._confusion_logits(emb_a, a), dim=2)
        return lt[torch.arange(a_worker.shape[0], device=a_worker.device), :, a_label]

    def worker_matrices(self, gate=None):
        """Each worker's matrix for an average item (hidden representation 0); the trainer reports the mean of
        each worker's per-answer matrices instead (:meth:`answer_matrices`)."""
        h = torch.zeros(self.n_workers, self.embed_x.in_features, device=self.embed_x.weight.device)
        a = torch.eye(self.n_workers, device=h.device)
        return F.softmax(self._confusion_logits(h, a), dim=2)

    def batch_loss(self, xb, logits, a_local, a_worker, a_label, gen=None):
        x = xb[a_local]
        a = F.one_hot(a_worker, self.n_workers).to(x.dtype)
        z = F.one_hot(a_label, self.n_classes).to(x.dtype)
        if self.mix_alpha > 0 and x.shape[0] > 1:
            n = x.shape[0]
            beta = torch.distributions.Beta(torch.tensor(self.mix_alpha), torch.tensor(self.mix_alpha))
            lam = beta.sample((n, 1)).to(x.device)
            perm = torch.randperm(n, generator=gen).to(x.device) if gen is not None else \
                torch.randperm(n, device=x.device)
            x, a, z = (lam * v + (1 - lam) * v[perm] for v in (x, a, z))
        h = self._hidden(x)
        logp = F.log_softmax(self._out(h).float(), dim=1)
        lt = F.log_softmax(self._confusion_logits(h, a).float(), dim=2)
        p_answer = torch.logsumexp(logp.unsqueeze(2) + lt, dim=1)        # (A, K) log P(c | x~, a~)
        return -(z * p_answer).sum(1).mean()
