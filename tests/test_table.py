"""The tidy table's boundary checks name the line and column and drop nothing."""
import pytest

from bigsparse_lib.errors import InputError
from bigsparse_lib.table import read_tidy_csv, require_points


def write(tmp_path, text):
    p = tmp_path / "t.csv"
    p.write_text(text)
    return p


GOOD = "sparsity,nnz,data,loss,family\n0.0,1e6,1e9,3.0,t5\n0.5,1e6,1e9,2.9,t5\n"


def test_good_table_keeps_rows_and_metadata(tmp_path):
    df = read_tidy_csv(write(tmp_path, GOOD))
    assert len(df) == 2 and list(df["family"]) == ["t5", "t5"]


@pytest.mark.parametrize("text,message", [
    ("sparsity,nnz,loss\n0,1,1\n", "missing column(s) data"),
    ("sparsity,nnz,data,loss\n0,1e6,1e9,3\n1.0,1e6,1e9,3\n", "line 3, column 'sparsity': 1 must be in [0, 1)"),
    ("sparsity,nnz,data,loss\n-0.1,1e6,1e9,3\n", "line 2, column 'sparsity'"),
    ("sparsity,nnz,data,loss\n0,0,1e9,3\n", "line 2, column 'nnz': 0 must be positive"),
    ("sparsity,nnz,data,loss\n0,1e6,-5,3\n", "line 2, column 'data'"),
    ("sparsity,nnz,data,loss\n0,1e6,1e9,0\n", "line 2, column 'loss'"),
    ("sparsity,nnz,data,loss\n0,1e6,1e9,3\n0,1e6,1e9,nan\n", "line 3, column 'loss': nan is not a finite number"),
    ("sparsity,nnz,data,loss\n0,1e6,abc,3\n", "line 2, column 'data': 'abc' is not a finite number"),
    ("sparsity,nnz,data,loss\n", "no rows"),
])
def test_bad_tables_name_line_and_column(tmp_path, text, message):
    with pytest.raises(InputError) as e:
        read_tidy_csv(write(tmp_path, text))
    assert message in str(e.value)


def test_dense_requires_zero_sparsity(tmp_path):
    with pytest.raises(InputError, match="line 3, column 'sparsity'.*--dense"):
        read_tidy_csv(write(tmp_path, GOOD), dense=True)


def test_require_points():
    require_points(7, 7)
    with pytest.raises(InputError, match="6 point"):
        require_points(6, 7)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_tidy_csv(tmp_path / "nope.csv")
