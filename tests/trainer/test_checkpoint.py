"""Checkpoints load weights only (no pickled code)."""

import json
import os

import pytest


def test_checkpoints_load_weights_only(tmp_path):
    import pickle

    import torch

    from trainer import checkpoint as ckpt
    from trainer.config import ConfigError

    ckpt.save(tmp_path, 1, {"model": {"w": torch.zeros(2)}}, {"x": 1}, 2)
    state, _ = ckpt.latest(tmp_path)  # tensors, RNG states as plain values: fine
    assert torch.equal(state["model"]["w"], torch.zeros(2))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"model": Evil()}, tmp_path / "step_00000002.pt", pickle_module=pickle)
    (tmp_path / "step_00000002.json").write_text(json.dumps({"step": 2}))
    with pytest.raises(ConfigError, match="not loaded"):
        ckpt.latest(tmp_path)
