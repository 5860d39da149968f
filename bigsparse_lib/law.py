"""The scaling laws themselves: eq. 1/3 (sparse), eq. 2 (dense), eq. 4 (c_mul), eq. 7 (gain).

Units (DESIGN.md): N = non-zero parameters of the sparsified layers, D = training
tokens (T5) or examples (ViT), C = training FLOPs, S = sparsity in [0, 1).

Every function is elementwise arithmetic on its inputs, so it accepts Python floats,
numpy arrays (broadcasting) or JAX arrays (inside jit/grad/vmap) alike.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Mapping

from bigsparse_lib.errors import InputError
from bigsparse_lib.schedule import PAPER_SCHEDULE, GradualSchedule

# Training FLOPs per parameter per token/example: forward + backward ≈ 6 (Kaplan et al., 2020).
# The paper notes encoder-decoders cost about half; eq. 6 and the CLI use 6 for both.
FLOPS_PER_PARAM_TOKEN = 6.0


class _Coefs:
    """Shared behaviour of the coefficient records: names, dict round-trip, validation."""

    names: ClassVar[tuple[str, ...]]

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.names}

    @classmethod
    def from_dict(cls, coefs: Mapping[str, float]):
        missing = [k for k in cls.names if k not in coefs]
        if missing:
            raise InputError(f"coefficients for {cls.__name__} are missing {', '.join(missing)}")
        unknown = [k for k in coefs if k not in cls.names]
        if unknown:
            raise InputError(f"unknown coefficient name(s) {', '.join(unknown)}; expected {', '.join(cls.names)}")
        try:
            return cls(**{k: float(coefs[k]) for k in cls.names})
        except (TypeError, ValueError) as e:
            raise InputError(f"coefficients must be numbers: {e}") from None

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SparseLaw(_Coefs):
    """Coefficients of L(S, N, D), eq. 1 / eq. 3, as in Table 7.

    L = (a_S (1 - S)^b_S + c_S) * (1/N)^b_N + (a_D / D)^b_D + c
    """

    a_S: float
    b_S: float
    c_S: float
    b_N: float
    a_D: float
    b_D: float
    c: float

    names: ClassVar[tuple[str, ...]] = ("a_S", "b_S", "c_S", "b_N", "a_D", "b_D", "c")

    def loss(self, S, N, D):
        """Eq. 3: validation loss at sparsity S, non-zeros N, data D."""
        return sparse_loss(self, S, N, D)

    def dense(self) -> "DenseLaw":
        """The S = 0 special case written as eq. 2: a_N = (a_S + c_S)^(1/b_N)."""
        return DenseLaw(a_N=(self.a_S + self.c_S) ** (1.0 / self.b_N), b_N=self.b_N, a_D=self.a_D, b_D=self.b_D, c=self.c)


@dataclass(frozen=True)
class DenseLaw(_Coefs):
    """Coefficients of the dense law L(N, D), eq. 2.

    L = (a_N / N)^b_N + (a_D / D)^b_D + c. In Chinchilla's notation (Hoffmann et al.,
    2022) L = E + A / N^alpha + B / D^beta with A = a_N^b_N, B = a_D^b_D, E = c.
    """

    a_N: float
    b_N: float
    a_D: float
    b_D: float
    c: float

    names: ClassVar[tuple[str, ...]] = ("a_N", "b_N", "a_D", "b_D", "c")

    def loss(self, N, D):
        """Eq. 2."""
        return dense_loss(self, N, D)

    @classmethod
    def from_chinchilla(cls, E: float, A: float, B: float, alpha: float, beta: float) -> "DenseLaw":
        """From L = E + A/N^alpha + B/D^beta (Hoffmann et al.; Besiroglu et al.)."""
        return cls(a_N=A ** (1.0 / alpha), b_N=alpha, a_D=B ** (1.0 / beta), b_D=beta, c=E)

    def chinchilla(self) -> dict[str, float]:
        """E, A, B, alpha, beta of the same law."""
        return {"E": self.c, "A": self.a_N**self.b_N, "B": self.a_D**self.b_D, "alpha": self.b_N, "beta": self.b_D}


Law = SparseLaw | DenseLaw


def sparse_loss(law: SparseLaw, S, N, D):
    """Eq. 1 / eq. 3: L(S, N, D) = (a_S (1-S)^b_S + c_S) (1/N)^b_N + (a_D/D)^b_D + c."""
    capacity = (law.a_S * (1.0 - S) ** law.b_S + law.c_S) * N ** (-law.b_N)
    return capacity + (law.a_D / D) ** law.b_D + law.c


def dense_loss(law: DenseLaw, N, D):
    """Eq. 2: L(N, D) = (a_N/N)^b_N + (a_D/D)^b_D + c."""
    return (law.a_N / N) ** law.b_N + (law.a_D / D) ** law.b_D + law.c


def predict(law: Law, S, N, D):
    """Loss of either kind of law; a dense law has no S (it must be 0)."""
    if isinstance(law, SparseLaw):
        return sparse_loss(law, S, N, D)
    return dense_loss(law, N, D)


def gain(law: SparseLaw, S):
    """Eq. 7: how many times more parameters a dense model needs to match sparsity S.

    gain(S) = ((a_S (1-S)^b_S + c_S) / (a_S + c_S))^(-1/b_N). Because the D-term does not
    interact with S, this holds at every amount of data (§3.3.1).
    """
    return ((law.a_S * (1.0 - S) ** law.b_S + law.c_S) / (law.a_S + law.c_S)) ** (-1.0 / law.b_N)


def c_mul(S, schedule: GradualSchedule = PAPER_SCHEDULE):
    """Sparse training cost relative to a dense model of size N trained for the same steps (App. D).

    The model trained has N / (1 - S) weights, of which the fraction 1 - S_t is non-zero
    at training fraction t. With sparsity exploited as soon as it appears, the cost is
    ∫_0^1 (1 - S_t) dt / (1 - S), integrated over the schedule. For the paper's cubic
    25% -> 75% schedule this is eq. 4 (see `c_mul_eq4`).
    """
    return schedule.density_integral(S) / (1.0 - S)


def c_mul_eq4(S):
    """Eq. 4 exactly as printed: (0.25 + 0.50 (1 - 0.75 S)) / (1 - S) + 0.25."""
    return (0.25 + 0.50 * (1.0 - 0.75 * S)) / (1.0 - S) + 0.25


def c_mul_dense(S):
    """Dense training cost: the dense base model of size N / (1 - S) for the whole run (§3.3 (a))."""
    return 1.0 / (1.0 - S)


def training_flops(N, D, S=0.0, cost: str = "sparse", schedule: GradualSchedule = PAPER_SCHEDULE,
                   flops_per_token: float = FLOPS_PER_PARAM_TOKEN):
    """Training FLOPs C = flops_per_token * N * D * c_mul(S) for a model with N non-zeros at the end.

    cost="dense": every step costs as much as the dense base model (c_mul = 1/(1-S)).
    cost="sparse": sparsity is exploited as soon as it appears (c_mul from the schedule).
    """
    return flops_per_token * N * D * cost_multiplier(S, cost, schedule)


def cost_multiplier(S, cost: str, schedule: GradualSchedule = PAPER_SCHEDULE):
    """c_mul(S) for cost "dense" or "sparse" (§3.3)."""
    if cost == "dense":
        return c_mul_dense(S)
    if cost == "sparse":
        return c_mul(S, schedule)
    raise InputError(f"cost must be 'dense' or 'sparse', got {cost!r}")


def data_for_compute(C, N, S=0.0, cost: str = "sparse", schedule: GradualSchedule = PAPER_SCHEDULE,
                     flops_per_token: float = FLOPS_PER_PARAM_TOKEN):
    """D_S = (C / (flops_per_token N)) / c_mul(S): the data a budget C buys an S-sparse model with N non-zeros (§3.3)."""
    return (C / (flops_per_token * N)) / cost_multiplier(S, cost, schedule)
