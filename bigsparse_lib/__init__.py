"""bigsparse_lib: a thin JAX library behind the bigsparse book.

Modules follow the paper's concepts: `law` (eq. 1-4, 7), `optimal` (eq. 5-6),
`fit` (App. C), `paper` (published numbers and released data), `schedule`
(the gradual pruning schedule), and the training engine (`models`, `pruning`,
`optim`, `data`, `train`) and `sweep`.
"""

__version__ = "0.1.0"
