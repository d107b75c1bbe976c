import torch

from reffakd.data.augment import AugmentPolicy, BatchTransform, channel_stats
from reffakd.data.dataset import ImageSplit, RawDataset, hold_out_validation
from reffakd.data.loader import BatchLoader


def images(n=8, c=1, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def test_shapes_and_range_without_normalisation():
    t = BatchTransform(32, [0.0], [1.0], AugmentPolicy(crop_padding=4, flip=True, rotation=15))
    out = t(images(), train=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == (8, 1, 32, 32)
    assert out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_normalisation_uses_channel_stats():
    x = images(64, 3, 32)
    mean, std = channel_stats(x)
    out = BatchTransform(32, mean, std)(x, train=False)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)


def test_same_seed_same_augmentation():
    t = BatchTransform(32, [0.5], [0.5], AugmentPolicy(crop_padding=4, flip=True, rotation=15))
    x = images()
    a = t(x, train=True, generator=torch.Generator().manual_seed(7))
    b = t(x, train=True, generator=torch.Generator().manual_seed(7))
    c = t(x, train=True, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_eval_is_deterministic_resize():
    t = BatchTransform(32, [0.0], [1.0], AugmentPolicy(flip=True, rotation=15))
    x = images()
    assert torch.equal(t(x, train=False), t(x, train=False))
    same_size = BatchTransform(28, [0.0], [1.0])(x, train=False)
    assert torch.allclose(same_size * 255, x.float())


def test_identity_policy_equals_plain_resize():
    x = images(4, 3, 32)
    t = BatchTransform(32, [0.0], [1.0], AugmentPolicy())
    assert torch.equal(t(x, train=True), t(x, train=False))


def test_flip_only_mirrors_and_crop_is_an_exact_shift():
    x = images(64, 1, 8, seed=2)
    flip = BatchTransform(8, [0.0], [1.0], AugmentPolicy(flip=True))
    out = flip(x, train=True, generator=torch.Generator().manual_seed(0)) * 255
    plain, mirrored = x.float(), x.float().flip(-1)
    for i in range(len(x)):
        assert torch.allclose(out[i], plain[i], atol=1e-3) or torch.allclose(
            out[i], mirrored[i], atol=1e-3
        )
    crop = BatchTransform(8, [0.0], [1.0], AugmentPolicy(crop_padding=2))
    out = crop(x, train=True, generator=torch.Generator().manual_seed(0)) * 255
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2))
    windows = [padded[:, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
    for i in range(len(x)):
        assert any(torch.allclose(out[i], w[i], atol=1e-3) for w in windows)


def test_loader_gathers_by_index_and_shuffles_with_generator():
    split = ImageSplit(images(10), torch.arange(10) % 3, ["a", "b", "c"])
    loader = BatchLoader(split, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert [len(b.labels) for b in batches] == [4, 4, 2]
    seen = torch.cat([b.indices for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    for b in batches:
        assert torch.equal(b.inputs, split.images[b.indices])
        assert torch.equal(b.labels, split.labels[b.indices])


def test_validation_split_is_stratified_and_seeded():
    labels = torch.arange(5).repeat(20)
    split = ImageSplit(images(100), labels, list("abcde"))
    raw = RawDataset("toy", split, split)
    a = hold_out_validation(raw, 0.1, seed=0)
    b = hold_out_validation(raw, 0.1, seed=0)
    assert len(a.val) == 10 and len(a.train) == 90
    assert torch.equal(torch.bincount(a.val.labels), torch.full((5,), 2))
    assert torch.equal(a.val.images, b.val.images)
    c = hold_out_validation(raw, 0.1, seed=1)
    assert not torch.equal(a.val.images, c.val.images)


def test_train_and_eval_agree_at_the_borders_when_resizing():
    x = images(16, 1, 28, seed=3)
    t = BatchTransform(32, [0.0], [1.0], AugmentPolicy(flip=True))
    evaluated = t(x, train=False)
    trained = t(x, train=True, generator=torch.Generator().manual_seed(0))
    for i in range(len(x)):
        assert torch.allclose(trained[i], evaluated[i], atol=1e-5) or torch.allclose(
            trained[i], evaluated[i].flip(-1), atol=1e-5
        )


def test_broadcast_grid_is_affine_grid():
    """The transform's sampling grid equals torch's ``affine_grid`` (computed with a batched
    matrix product) for the maps it draws, at every output size."""
    import torch.nn.functional as F

    policy = AugmentPolicy(crop_padding=4, flip=True, rotation=15)
    for size in (16, 32, 64):
        t = BatchTransform(size, [0.5], [0.5], policy)
        theta = t.random_affine(64, torch.Generator().manual_seed(size))
        reference = F.affine_grid(theta, [64, 1, size, size], align_corners=False)
        assert torch.allclose(t.affine_grid(theta), reference, rtol=0, atol=1e-6)
