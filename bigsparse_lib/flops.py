"""Training-FLOP accounting of a run, step by step (§3.3, eq. 4, App. D).

The paper prices a training step at 6 FLOPs per parameter per token (Kaplan et al.,
2020), and defines two costs for a sparse run (§3.3):

- *dense* cost: every step costs as much as the dense base model, whose sparsified
  layers hold `dense` weights: 6 * dense * D_step;
- *sparse* cost: sparsity is exploited as soon as it appears, so a step costs
  6 * nnz_t * D_step, with nnz_t the non-zeros of the sparsified layers at that step.

Summed over a run with the paper's schedule these give `law.training_flops(N, D, S,
cost="dense" | "sparse")` up to the discreteness of mask updates (App. D integrates the
continuous schedule). Only the sparsified layers count (N excludes embeddings, DESIGN.md),
and the totals are exact Python integers so that a resumed run matches bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from bigsparse_lib.law import FLOPS_PER_PARAM_TOKEN

K = int(FLOPS_PER_PARAM_TOKEN)  # 6: forward + backward, per parameter per token/example


@dataclass(frozen=True)
class Spent:
    """What a run has consumed so far: steps, data D (tokens or examples) and FLOPs C."""

    steps: int = 0
    data: int = 0
    flops_dense: int = 0
    flops_sparse: int = 0

    def add_step(self, nnz: int, dense: int, data_per_step: int) -> "Spent":
        """One training step on `data_per_step` units with `nnz` of `dense` sparsified weights non-zero."""
        return replace(
            self,
            steps=self.steps + 1,
            data=self.data + int(data_per_step),
            flops_dense=self.flops_dense + K * int(dense) * int(data_per_step),
            flops_sparse=self.flops_sparse + K * int(nnz) * int(data_per_step),
        )

    def to_dict(self) -> dict[str, int]:
        return {"steps": self.steps, "data": self.data, "flops_dense": self.flops_dense,
                "flops_sparse": self.flops_sparse}

    @classmethod
    def from_dict(cls, d) -> "Spent":
        return cls(**{k: int(d[k]) for k in ("steps", "data", "flops_dense", "flops_sparse")})
