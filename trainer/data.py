"""Reproducible batches from a memory-mapped token file.

The batch of step s is a pure function of (seed, s): the stream visits non-overlapping windows
in a fresh permutation each epoch, so the data position in a checkpoint is just the step, and a
resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


class Batches:
    def __init__(
        self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int, pin: bool = False
    ):
        self.tokens = tokens
        self.pin = pin  # page-locked batches, so a CUDA copy with non_blocking=True is async
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.n_windows = (len(tokens) - 1) // seq_len
        if self.n_windows < 1:
            raise ValueError(
                f"the token file holds {len(tokens)} tokens, fewer than one window of "
                f"data.seq_len={seq_len} + 1; lower data.seq_len"
            )
        self._perm = lru_cache(maxsize=4)(self._permutation)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)

    def position(self, step: int) -> dict:
        first = step * self.batch_size
        return {"step": step, "epoch": first // self.n_windows, "index": first % self.n_windows}

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), each (batch_size, seq_len) int64."""
        rows = []
        for j in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, i = divmod(j, self.n_windows)
            start = int(self._perm(epoch)[i]) * self.seq_len
            rows.append(self.tokens[start : start + self.seq_len + 1])
        chunk = torch.from_numpy(np.stack(rows).astype(np.int64))
        if self.pin:
            chunk = chunk.pin_memory()
        return chunk[:, :-1], chunk[:, 1:]
