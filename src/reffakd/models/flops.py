"""Hand counts of recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) for FLOP accounting.

``torch.utils.flop_counter.FlopCounterMode`` counts an RNN only when torch runs it as
``mm``/``addmm`` (on CPU: a GRU; an LSTM on a packed batch of unequal lengths). Fused kernels
have no formula and count 0: on CPU ``mkldnn_rnn_layer`` runs an LSTM on a padded tensor or on
a packed batch whose rows are all the same length (so a full-length dummy input counts 0);
on GPU ``_cudnn_rnn`` (no formula either) runs both. Each RNN call is therefore counted by
hand and the counter's own count for that call replaced:
``extra_recurrent_flops = sum over calls (hand - counted by torch)``.

Convention (as in :mod:`reffakd.cost`): a multiply-add is 2 FLOPs; only the gate matmuls count,
biases and element-wise gate maths do not. Per token, layer and direction, with ``G`` gates
(LSTM 4, GRU 3, RNN 1), hidden ``h``, layer input ``i`` and recurrent width ``r`` (``h``, or
``proj_size`` with ``2 h r`` more for the LSTM projection): ``2 G h (i + r)``. Tokens are those
that actually run: every position of a padded tensor (``B x L``), only the real tokens of a
``PackedSequence``. Cost accounting feeds a full-length input (no pads, see
:func:`full_length_ids`), so a text model is counted at its padded length ``L``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def full_length_ids(batch_size: int, length: int, token_id: int = 1) -> torch.Tensor:
    """An int64 ``(batch_size, length)`` batch of one non-pad token: every position is real."""
    return torch.full((batch_size, length), token_id, dtype=torch.long)


def rnn_flops_per_token(rnn: nn.RNNBase) -> int:
    """FLOPs of one token through every layer and direction of ``rnn`` (see module docstring)."""
    gates = GATES[rnn.mode]
    h = rnn.hidden_size
    r = rnn.proj_size or h
    directions = 2 if rnn.bidirectional else 1
    total = 0
    for layer in range(rnn.num_layers):
        i = rnn.input_size if layer == 0 else r * directions
        total += 2 * gates * h * (i + r) + (2 * h * r if rnn.proj_size else 0)
    return total * directions


def rnn_tokens(rnn: nn.RNNBase, x: torch.Tensor | PackedSequence) -> int:
    """Tokens that run through ``rnn``: packed rows, or every position of a padded tensor."""
    if isinstance(x, PackedSequence):
        return int(x.data.shape[0])
    return x.numel() // rnn.input_size


def _count_recurrent(model: nn.Module, inputs: Any) -> tuple[int, int]:
    """``(hand count, torch's count)`` of all RNN calls in one eval, no-grad forward pass."""
    rnns = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    # RNNs a model runs without registering them (weights shared with a registered one)
    rnns += [r for m in model.modules() for r in getattr(m, "recurrent_calls", ())]
    if not rnns:
        return 0, 0
    hand = counted = 0
    before: list[int] = []
    counter = FlopCounterMode(display=False)

    def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        before.append(counter.get_total_flops())

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        nonlocal hand, counted
        assert isinstance(module, nn.RNNBase)
        hand += rnn_tokens(module, args[0]) * rnn_flops_per_token(module)
        counted += counter.get_total_flops() - before.pop()

    handles = [h for m in rnns for h in (m.register_forward_pre_hook(pre_hook),
                                         m.register_forward_hook(hook))]  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return hand, counted


def extra_recurrent_flops(model: nn.Module, inputs: Any) -> int:
    """FLOPs to add to ``FlopCounterMode``'s total so that RNN calls count as by hand.

    Runs ``model(inputs)`` once more in eval mode (mode restored), only if it has RNN modules;
    0 otherwise. The result is for the whole batch.
    """
    hand, counted = _count_recurrent(model, inputs)
    return hand - counted
