"""Text models: registry, padding handling against naive references, training, FLOPs, sizes."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reffakd.errors import UserError
from reffakd.models import build_model, is_text_model, list_models
from reffakd.models.flops import _count_recurrent, full_length_ids, rnn_flops_per_token
from reffakd.models.rnn_ae import BOS_ID, GRUAutoencoder
from reffakd.training.cost import forward_flops

CLASSIFIERS = ["textcnn", "bilstm", "bilstm2x512", "transformer"]
VOCAB = 40


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Small recurrent steps run several times faster on one thread than on a busy pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def padded(rows: list[list[int]], length: int | None = None) -> torch.Tensor:
    """Right-pad token rows with 0 to ``length`` (default: the longest row)."""
    length = length or max(len(r) for r in rows)
    return torch.tensor([r + [0] * (length - len(r)) for r in rows], dtype=torch.long)


def mixed_rows(seed: int = 0) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    lengths = [9, 1, 4, 2, 7]
    return [torch.randint(1, VOCAB, (n,), generator=gen).tolist() for n in lengths]


def build(name: str, num_classes: int = 3, vocab: int = VOCAB) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes, vocab_size=vocab, max_len=16)


# ---------------------------------------------------------------------------------------------
# Registry


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifiers_give_logits_on_mixed_lengths(name: str) -> None:
    model = build(name, num_classes=3).eval()
    with torch.no_grad():
        out = model(padded(mixed_rows()))
    assert out.shape == (5, 3)
    assert torch.isfinite(out).all()


def test_build_model_forwards_text_shape_and_keeps_image_positionals() -> None:
    model = build_model("transformer", 4, vocab_size=100, max_len=8)
    assert model.positions.num_embeddings == 8 and model.embedding.num_embeddings == 100
    assert model.fc.out_features == 4
    lenet = build_model("lenet5", 10, 1, 32)
    assert next(lenet.parameters()).shape[1] == 1
    assert next(build_model("lenet5", 10).parameters()).shape[1] == 3  # default in_channels 3


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("textcnn", {"in_channels": 3}, "is a text model .*not in_channels"),
        ("textcnn", {}, "vocab_size is missing"),
        ("resnet8", {"vocab_size": 100}, "is an image model .*not vocab_size"),
        ("timm:resnet18", {"vocab_size": 100}, "does not take"),
    ],
)
def test_build_model_refuses_inputs_of_the_other_modality(
    name: str, kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        build_model(name, 2, **kwargs)


def test_text_models_are_told_apart() -> None:
    text = {n for n in list_models() if is_text_model(n)}
    assert text == {*CLASSIFIERS, "rnn_ae"}
    assert not is_text_model("timm:resnet18")


# ---------------------------------------------------------------------------------------------
# Padding: invariance and naive references


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_extra_pad_columns_do_not_change_outputs(name: str) -> None:
    model = build(name).eval()
    rows = mixed_rows()
    with torch.no_grad():
        tight = model(padded(rows))
        loose = model(padded(rows, length=16))
    torch.testing.assert_close(loose, tight, atol=1e-5, rtol=0)


def test_textcnn_matches_a_per_sentence_reference() -> None:
    """Each sentence alone; one shorter than a filter is zero-padded to that filter's width."""
    model = build("textcnn").eval()
    rows = mixed_rows()
    features = []
    for row in rows:
        x = model.embedding(torch.tensor(row)).T  # (E, n)
        pooled = [
            F.relu(conv(F.pad(x, (0, max(0, k - len(row))))[None])).amax(2)
            for k, conv in zip((3, 4, 5), model.convs, strict=True)
        ]
        features.append(torch.cat(pooled, 1))
    with torch.no_grad():
        expected = model.fc(torch.cat(features))
        torch.testing.assert_close(model(padded(rows)), expected, atol=1e-5, rtol=1e-5)


def test_bilstm_matches_running_each_sentence_alone() -> None:
    model = build("bilstm").eval()
    rows = mixed_rows()
    with torch.no_grad():
        states = []
        for row in rows:
            _, (h_n, _) = model.lstm(model.embedding(torch.tensor([row])))
            states.append(torch.cat([h_n[0], h_n[1]], 1))
        expected = model.head(torch.cat(states))
        torch.testing.assert_close(model(padded(rows)), expected, atol=1e-5, rtol=1e-5)


def test_all_pad_row_is_finite_and_transformer_refuses_long_input() -> None:
    for name in CLASSIFIERS:
        with torch.no_grad():
            assert torch.isfinite(build(name).eval()(torch.zeros(2, 3, dtype=torch.long))).all()
    with pytest.raises(ValueError, match="exceeds max_len 16"):
        build("transformer")(torch.ones(1, 17, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# Training


def marker_task(n: int = 24, num_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random filler tokens with one class marker token (id = class + 1) at a random place."""
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, num_classes, (n,), generator=gen)
    rows = []
    for label in labels.tolist():
        length = int(torch.randint(3, 11, (1,), generator=gen))
        row = torch.randint(num_classes + 1, VOCAB, (length,), generator=gen)
        row[int(torch.randint(0, length, (1,), generator=gen))] = label + 1
        rows.append(row.tolist())
    return padded(rows, length=12), labels


def eval_loss(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return F.cross_entropy(model(ids), labels).item()


@pytest.mark.parametrize(
    ("name", "lr"), [("textcnn", 2e-3), ("bilstm", 2e-3), ("transformer", 3e-4)]
)  # bilstm2x512 is bilstm, larger and slower
def test_training_steps_reduce_the_loss(name: str, lr: float) -> None:
    model = build(name)
    ids, labels = marker_task()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = [eval_loss(model, ids, labels)]
    for _ in range(5):
        model.train()
        optimizer.zero_grad()
        F.cross_entropy(model(ids), labels).backward()
        optimizer.step()
        losses.append(eval_loss(model, ids, labels))
    assert losses[1] != losses[0]
    assert losses[-1] < 0.5 * losses[0], losses


# ---------------------------------------------------------------------------------------------
# The text autoencoder


def test_rnn_ae_shapes_and_teacher_forcing_input() -> None:
    model = build("rnn_ae")
    assert isinstance(model, GRUAutoencoder)
    ids = padded(mixed_rows())
    seen: list[torch.Tensor] = []
    model.embedding.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    logits = model(ids)
    assert logits.shape == (5, 9, VOCAB)
    decoder_input, encoder_input = seen
    torch.testing.assert_close(encoder_input, ids)
    assert decoder_input[:, 0].eq(BOS_ID).all()  # [bos] + ids[:-1]
    torch.testing.assert_close(decoder_input[:, 1:], ids[:, :-1])
    assert model.encode(ids).shape == (5, 64) and model.embedding_dim == 64


def test_rnn_ae_losses_ignore_padding() -> None:
    model = build("rnn_ae").eval()
    rows = mixed_rows()
    with torch.no_grad():
        per_sample = model.per_sample_loss(padded(rows))
        batch = model.reconstruction_loss(padded(rows))
        loose = model.per_sample_loss(padded(rows, length=14))
        alone = torch.stack([model.per_sample_loss(torch.tensor([r]))[0] for r in rows])
        code = model.encode(padded(rows))
        code_loose = model.encode(padded(rows, length=14))
    counts = torch.tensor([len(r) for r in rows], dtype=torch.float)
    torch.testing.assert_close(batch, (per_sample * counts).sum() / counts.sum())
    torch.testing.assert_close(loose, per_sample, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone, per_sample, atol=1e-5, rtol=0)
    torch.testing.assert_close(code_loose, code, atol=1e-6, rtol=0)


def test_rnn_ae_learns_to_reconstruct_a_tiny_corpus() -> None:
    model = build("rnn_ae", vocab=24)
    gen = torch.Generator().manual_seed(2)
    rows = [torch.randint(4, 24, (int(n),), generator=gen).tolist() for n in [3, 5, 6, 4] * 4]
    ids = padded(rows)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        start = model.reconstruction_loss(ids).item()
    for _ in range(50):
        optimizer.zero_grad()
        loss = model.reconstruction_loss(ids)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        end = model.reconstruction_loss(ids).item()
        first = model(ids)[:, 0].argmax(-1)
    assert abs(start - math.log(24)) < 0.5
    assert end < 0.5 * math.log(24), (start, end)
    # the decoder sees only [bos] at position 0: the first token must come from the encoding
    assert torch.equal(first, ids[:, 0])


def test_rnn_ae_rejects_a_vocabulary_without_the_specials() -> None:
    with pytest.raises(ValueError, match="bos 2 and eos 3"):
        GRUAutoencoder(vocab_size=3)
    with pytest.raises(ValueError, match="output_vocab 2 must cover"):
        GRUAutoencoder(vocab_size=30, output_vocab=2)


# ---------------------------------------------------------------------------------------------
# Sizes


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("textcnn", 661_805),  # 300 V + 360,300 + 301 C
        ("bilstm", 1_987_205),  # 300 V + 1,685,200 + 401 C
        ("bilstm2x512", 10_345_797),  # 300 V + 10,043,792 + 401 C
        ("transformer", 3_449_605),  # 256 V + 256 max_len + 3,159,552 + 257 C
        ("rnn_ae", 72_712),  # 32 V + min(V, 2000) + 39,712
    ],
)
def test_parameter_counts_at_1000_tokens_5_classes(name: str, count: int) -> None:
    assert n_params(build_model(name, 5, vocab_size=1000, max_len=128)) == count


def test_rnn_ae_parameter_formula() -> None:
    for vocab in (5, 1000, 2000, 10_000):
        expected = 32 * vocab + min(vocab, 2000) + 39_712
        assert n_params(build_model("rnn_ae", 0, vocab_size=vocab)) == expected
    assert n_params(build_model("rnn_ae", 0, vocab_size=10_000)) == 361_712


def test_rnn_ae_predicts_rare_words_as_unk() -> None:
    model = GRUAutoencoder(vocab_size=50, output_vocab=10).eval()
    ids = torch.tensor([[4, 12, 9, 49, 0]])
    assert model(ids).shape == (1, 5, 10)
    assert model.targets(ids).tolist() == [[4, 1, 9, 1, 0]]
    with torch.no_grad():
        logits = model(ids)[0, :4].log_softmax(-1)
    expected = -logits[torch.arange(4), torch.tensor([4, 1, 9, 1])].mean()
    torch.testing.assert_close(model.per_sample_loss(ids)[0], expected)


# ---------------------------------------------------------------------------------------------
# FLOPs: a multiply-add is 2; gate matmuls of LSTM 2*4*h*(in+h), GRU 2*3*h*(in+h) per token


def flops_per_sample(model: nn.Module, ids: torch.Tensor) -> int:
    return forward_flops(model, tuple(ids.shape[1:]), example_input=ids)["flops"]


@pytest.mark.parametrize("rows", [None, mixed_rows()])
def test_bilstm_flops_equal_the_hand_count(rows: list[list[int]] | None) -> None:
    model = build_model("bilstm", 4, vocab_size=500)
    ids = full_length_ids(3, 10) if rows is None else padded(rows)
    tokens = ids.numel()  # both directions run over every position of the (trimmed) batch
    lstm = 2 * (2 * 4 * 300 * (300 + 300))  # two directions
    head = 2 * 600 * 400 + 2 * 400 * 4
    assert flops_per_sample(model, ids) == (tokens * lstm + len(ids) * head) // len(ids)


@pytest.mark.parametrize("rows", [None, mixed_rows()])
def test_rnn_ae_flops_equal_the_hand_count(rows: list[list[int]] | None) -> None:
    vocab = 1000
    model = build_model("rnn_ae", 0, vocab_size=vocab)
    ids = full_length_ids(3, 10) if rows is None else padded(rows)
    gru = 2 * 3 * 64 * (32 + 64)
    # encoder, decoder, projection, tied output: every position of the (trimmed) batch
    per_position = 2 * gru + 2 * 64 * 32 + 2 * 32 * vocab
    expected = ids.numel() * per_position // len(ids)
    assert flops_per_sample(model, ids) == expected
    assert flops_per_sample(model, full_length_ids(1, 10)) == 10 * (2 * gru + 2 * 64 * 32 + 64_000)


def test_textcnn_flops_equal_the_hand_count() -> None:
    model = build_model("textcnn", 6, vocab_size=500)
    length = 20
    convs = sum(2 * (length - k + 1) * k * 300 * 100 for k in (3, 4, 5))
    counted = forward_flops(model, (length,), example_input=full_length_ids(2, length))
    assert counted["by_op"]["aten.convolution"] == convs == 12_120_000
    assert counted["flops"] == convs + 2 * 300 * 6


def test_transformer_flops_equal_the_hand_count() -> None:
    model = build_model("transformer", 2, vocab_size=500, max_len=32)
    length, d = 16, 256
    per_layer = 2 * length * (4 * d * d + 2 * d * 1024) + 2 * 2 * length * length * d
    assert flops_per_sample(model, full_length_ids(2, length)) == 4 * per_layer + 2 * d * 2


@pytest.mark.parametrize("rnn", [nn.LSTM(8, 16, 2, bidirectional=True), nn.GRU(8, 16)])
def test_bare_rnn_flops_are_the_hand_count_whatever_torch_counts(rnn: nn.RNNBase) -> None:
    gates = 4 if isinstance(rnn, nn.LSTM) else 3
    if isinstance(rnn, nn.LSTM):
        per_token = 2 * (2 * gates * 16 * (8 + 16)) + 2 * (2 * gates * 16 * (32 + 16))
    else:
        per_token = 2 * gates * 16 * (8 + 16)
    assert rnn_flops_per_token(rnn) == per_token
    x = torch.randn(5, 3, 8)  # (L, B, in): 15 tokens
    counted = forward_flops(rnn, (3, 8), example_input=x)
    assert counted["flops"] * 5 == 15 * per_token
    hand, by_torch = _count_recurrent(rnn, x)
    assert hand == 15 * per_token
    assert counted["by_op"].get("recurrent_correction", 0) * 5 == hand - by_torch


def test_lstm_projection_flops() -> None:
    rnn = nn.LSTM(8, 16, proj_size=4)
    assert rnn_flops_per_token(rnn) == 2 * 4 * 16 * (8 + 4) + 2 * 16 * 4
