"""Early stopping's best epoch: the result has the best epoch's weights, and the last epoch's are not copied.

The valid AUC of each epoch is scripted (a Trainer whose valid evaluation reports the given AUC and records the
weights it saw), so the best epoch is known in advance.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mdmt_nas.config import TrainConfig, load_config
from mdmt_nas.train import Trainer, train_architecture


def _scripted(aucs: list[float], seen: dict[int, dict[str, torch.Tensor]]) -> type[Trainer]:
    class Scripted(Trainer):
        def evaluate_split(self, data):
            m = super().evaluate_split(data)
            epoch = self.loop.epoch
            if data is self.splits.valid and epoch < len(aucs):  # an epoch's validation (not the result's)
                seen[epoch] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                m.auc = np.full_like(m.auc, aucs[epoch])
            return m

    return Scripted


@pytest.mark.parametrize("aucs,best,copies", [([0.6, 0.7, 0.65], 1, 2), ([0.6, 0.65, 0.7], 2, 2), ([0.7], 0, 0)])
def test_the_result_has_the_best_epochs_weights_and_the_last_epoch_is_not_copied(
    tiny_splits, monkeypatch, aucs, best, copies
):
    """A best epoch before the last is copied and restored; the last epoch's weights are the model's own (no copy)."""
    made, depth, real = [], [0], copy.deepcopy

    def counted(x, *a):  # outermost calls only (deepcopy recurses through the module attribute)
        made.append(1) if depth[0] == 0 else None
        depth[0] += 1
        try:
            return real(x, *a)
        finally:
            depth[0] -= 1

    monkeypatch.setattr("mdmt_nas.train.copy.deepcopy", counted)
    seen: dict[int, dict[str, torch.Tensor]] = {}
    cfg = TrainConfig(epochs=len(aucs), patience=0, batch_size=512, progress=False, threads=1)
    arch = load_config("examples/mmoe.yaml").arch
    result = train_architecture(arch, tiny_splits, cfg, trainer=_scripted(aucs, seen))
    assert result.best_epoch == best and result.epochs_run == len(aucs)
    state = result.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in seen[best].items())
    if best < len(aucs) - 1:  # a later epoch trained on: the restored weights are not the last ones
        assert not all(torch.equal(state[k], v) for k, v in seen[len(aucs) - 1].items())
    assert len(made) == copies
