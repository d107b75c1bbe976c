"""Autoencoder soft labels (AESL): class similarity, diagonal boost, softmax.

Spec: docs/methods.md §2.4-2.6. With unit-normalised embeddings ê_i and class sums
M_c = Σ_{i∈c} ê_i:

* S[a][b] = (M_a · M_b) / (n_a n_b) for a ≠ b — the mean cosine over all cross-class pairs;
* S[c][c] = (M_c · M_c − Σ_{i∈c} ‖ê_i‖²) / (n_c (n_c − 1)) — the mean over pairs of distinct
  samples of class c (self-pairs removed).

That is O(N·d + C²·d) work instead of the reference's O(N²·d) pairwise loop. Then
``AESL = softmax((S + b·I) / τ, dim=1)``; row y is the soft target for class y.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from reffakd.data.dataset import stratified_order
from reffakd.errors import UserError


def class_similarity(embeddings: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean pairwise cosine similarity between classes, (C, C) float64. See module docstring.

    Classes may have different sample counts; every class needs at least two samples.
    A zero embedding has cosine 0 with everything.
    """
    if embeddings.dim() != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError("embeddings must be (N, d) and labels (N,)")
    # Normalising and pooling in float32 loses ~1e-7; the C×C products run in float64.
    unit = F.normalize(embeddings.to(torch.float32), dim=1, eps=1e-12)
    require_two_per_class(labels, [str(c) for c in range(num_classes)])
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    sums = torch.zeros(num_classes, unit.shape[1]).index_add_(0, labels, unit).to(torch.float64)
    self_sq = torch.zeros(num_classes).index_add_(0, labels, (unit * unit).sum(dim=1))
    self_sq = self_sq.to(torch.float64)
    pair_sums = sums @ sums.T
    pair_counts = torch.outer(counts, counts)
    diag_sums = pair_sums.diagonal() - self_sq
    pair_sums.diagonal().copy_(diag_sums)
    pair_counts.diagonal().copy_(counts * (counts - 1))
    return pair_sums / pair_counts


def require_two_per_class(labels: Tensor, class_names: list[str]) -> None:
    """The similarity of a class with itself needs two of its samples: refuse fewer, naming
    the classes. Called on the training split before an autoencoder is trained."""
    counts = torch.bincount(labels, minlength=len(class_names))
    short = [name for name, count in zip(class_names, counts.tolist(), strict=True) if count < 2]
    if short:
        shown = ", ".join(repr(name) for name in short[:5]) + (", ..." if len(short) > 5 else "")
        raise UserError(
            f"soft labels need at least 2 training samples per class; {len(short)} "
            f"class{'' if len(short) == 1 else 'es'} ({shown}) have fewer. Add images, or keep "
            "more of them for training (a smaller data.val_fraction)."
        )


def soft_labels_from_similarity(
    similarity: Tensor, boost: float = 0.0, temperature: float = 1.0
) -> Tensor:
    """Row softmax of ``(S + boost·I) / temperature``, float32 (C, C)."""
    if temperature <= 0:
        raise UserError(f"soft-label temperature must be > 0, got {temperature}")
    boosted = similarity + boost * torch.eye(similarity.shape[0], dtype=similarity.dtype)
    return torch.softmax(boosted / temperature, dim=1).to(torch.float32)


def sample_per_class(labels: Tensor, k: int, seed: int, num_classes: int) -> Tensor:
    """Sorted indices of ``k`` samples per class (all of a class if it has fewer), drawn with
    ``seed``."""
    by_class, rank = stratified_order(labels, seed, num_classes)
    return torch.sort(by_class[rank < k]).values


def entropy_bits(table: Tensor) -> float:
    """Mean row entropy in bits: how flat the soft labels are (log2 C is uniform)."""
    p = table.clamp_min(1e-12)
    return float((-(p * p.log()).sum(dim=1) / math.log(2)).mean())
