import itertools
import math

import pytest
import torch

from reffakd.aesl.similarity import class_similarity, sample_per_class, soft_labels_from_similarity
from reffakd.aesl.soft_labels import SoftLabels
from reffakd.errors import UserError


def naive_similarity(embeddings: torch.Tensor, labels: torch.Tensor, c: int) -> torch.Tensor:
    """The reference notebooks' recipe: a double loop over all pairs of distinct samples."""
    e = embeddings.tolist()
    y = labels.tolist()
    sums = [[0.0] * c for _ in range(c)]
    counts = [[0] * c for _ in range(c)]
    norms = [math.sqrt(sum(v * v for v in row)) for row in e]
    for i, j in itertools.permutations(range(len(e)), 2):
        dot = sum(a * b for a, b in zip(e[i], e[j], strict=True))
        cos = dot / (norms[i] * norms[j])
        sums[y[i]][y[j]] += cos
        counts[y[i]][y[j]] += 1
    return torch.tensor(
        [[sums[a][b] / counts[a][b] for b in range(c)] for a in range(c)], dtype=torch.float64
    )


def test_similarity_matches_pairwise_loop_with_unequal_class_sizes():
    torch.manual_seed(0)
    sizes = [2, 5, 3, 7]
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(sizes)])
    labels = labels[torch.randperm(len(labels))]
    embeddings = torch.randn(len(labels), 6).relu() + 0.01  # post-ReLU-like, non-zero
    fast = class_similarity(embeddings, labels, len(sizes))
    slow = naive_similarity(embeddings, labels, len(sizes))
    assert torch.allclose(fast, slow, atol=1e-6, rtol=0)
    assert torch.allclose(fast, fast.T)


def test_similarity_with_signed_embeddings():
    torch.manual_seed(1)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    embeddings = torch.randn(9, 4, dtype=torch.float64)
    fast = class_similarity(embeddings, labels, 3)
    assert torch.allclose(fast, naive_similarity(embeddings, labels, 3), atol=1e-6, rtol=0)


def test_identical_embeddings_give_similarity_one():
    embeddings = torch.ones(6, 3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    sim = class_similarity(embeddings, labels, 3)
    assert torch.allclose(sim, torch.ones(3, 3, dtype=torch.float64))


def test_class_with_one_sample_is_an_error():
    with pytest.raises(UserError, match="at least 2 training samples"):
        class_similarity(torch.randn(3, 2), torch.tensor([0, 0, 1]), 2)


def test_boost_and_temperature():
    sim = torch.tensor([[0.5, 0.2], [0.2, 0.5]], dtype=torch.float64)
    table = soft_labels_from_similarity(sim, boost=0.1, temperature=1.0)
    expected_00 = math.exp(0.6) / (math.exp(0.6) + math.exp(0.2))
    assert table[0, 0].item() == pytest.approx(expected_00, abs=1e-6)
    assert torch.allclose(table.sum(1), torch.ones(2))
    sharper = soft_labels_from_similarity(sim, boost=0.1, temperature=0.1)
    assert sharper[0, 0] > table[0, 0]


def test_sample_per_class_is_seeded_and_balanced():
    labels = torch.arange(10).repeat(30)
    first = sample_per_class(labels, 4, seed=3, num_classes=10)
    again = sample_per_class(labels, 4, seed=3, num_classes=10)
    other = sample_per_class(labels, 4, seed=4, num_classes=10)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.equal(torch.bincount(labels[first]), torch.full((10,), 4))


def test_soft_label_file_round_trip_and_validation(tmp_path):
    table = torch.softmax(torch.randn(3, 3), dim=1)
    labels = SoftLabels(table, None, {"dataset": "toy", "class_names": ["a", "b", "c"]})
    labels.save(tmp_path / "sl.pt")
    loaded = SoftLabels.load(tmp_path / "sl.pt")
    assert torch.equal(loaded.table, table)
    loaded.validate(3, ["a", "b", "c"])
    with pytest.raises(UserError, match="shape"):
        loaded.validate(4)
    with pytest.raises(UserError, match="made for classes"):
        loaded.validate(3, ["x", "y", "z"])
    bad = SoftLabels(table * 2, None, {})
    with pytest.raises(UserError, match="probability distributions"):
        bad.validate(3)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot read"):
        SoftLabels.load(tmp_path / "junk.pt")
