"""Library errors speak the library's language; the command line says its flags (issue 14;
the flags themselves are checked in test_cli_train.py and test_cli_fit.py)."""
import pandas as pd
import pytest

from bigsparse_lib import fit, train
from bigsparse_lib.errors import InputError


def test_an_error_names_the_argument_in_python_and_the_flag_on_the_command_line():
    e = InputError("{arg} must be positive, got 0", arg="batch_size")
    assert str(e) == "batch_size must be positive, got 0" and e.for_cli() == "--batch-size must be positive, got 0"
    e = InputError("b_N must be positive, got 0", arg="fix")
    assert str(e) == "fix: b_N must be positive, got 0" and e.for_cli() == "--fix: b_N must be positive, got 0"
    plain = InputError("line 3, column 'loss': not a number")
    assert str(plain) == plain.for_cli() == "line 3, column 'loss': not a number"


def test_library_calls_do_not_mention_flags():
    with pytest.raises(InputError) as e:
        train.TrainConfig(family="t5", preset="toy", sparsity=1.5).validate()
    assert str(e.value).startswith("sparsity must be in [0, 1)") and "--" not in str(e.value)
    table = pd.DataFrame({"sparsity": [0.0] * 8, "nnz": [1e6, 2e6] * 4, "data": [1e9] * 4 + [2e9] * 4,
                          "loss": [3.0, 2.9, 2.8, 2.7, 2.6, 2.5, 2.4, 2.3]})
    with pytest.raises(InputError) as e:
        fit.fit(table, dense=True, delta=-1.0)
    assert str(e.value) == "delta must be a positive number, got -1.0"

