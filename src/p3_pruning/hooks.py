"""Kedro hooks: per-node reseeding so every node is reproducible on its own (and on resume)."""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch
from kedro.framework.hooks import hook_impl


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class SeedHook:
    """Reseed before each node from the run seed and crc32 of the node name.

    A node's randomness then depends only on its name and the seed, not on which nodes ran before
    it, so a resumed run reproduces an uninterrupted one.
    """

    def __init__(self) -> None:
        self.seed = 0

    @hook_impl
    def after_context_created(self, context) -> None:
        self.seed = int(context.params.get("seed", 0))

    @hook_impl
    def before_node_run(self, node) -> None:
        seed_everything(self.seed + zlib.crc32(node.name.encode()))
