import pytest

from reffakd.config import TrainConfig, apply_overrides, from_dict, to_dict
from reffakd.errors import UserError
from reffakd.kd.methods import resolve_method


def test_overrides_reach_nested_sections():
    values = apply_overrides(
        to_dict(TrainConfig()), ["optim.lr=0.05", "loss.alpha=0.3", "optim.milestones=[2, 4]"]
    )
    config = from_dict(TrainConfig, values)
    assert config.optim.lr == 0.05
    assert config.optim.milestones == [2, 4]
    assert config.loss == {"alpha": 0.3}


def test_unknown_key_is_a_user_error():
    with pytest.raises(UserError, match="optim.lrr"):
        from_dict(TrainConfig, apply_overrides(to_dict(TrainConfig()), ["optim.lrr=1"]))


def test_method_resolution_merges_preset_options():
    method = resolve_method("reffakd", {"soft_labels": "x.pt"}, {"alpha": 0.5})
    assert method.source == "aesl" and method.loss == "kd"
    assert method.loss_options["alpha"] == 0.5
    assert method.loss_options["teacher_temperature"] == 1.0
    swapped = resolve_method("reffakd", {}, {"name": "dkd"})
    assert swapped.loss == "dkd" and "teacher_temperature" not in swapped.loss_options
    with pytest.raises(UserError, match="unknown method"):
        resolve_method("reffakdd")
