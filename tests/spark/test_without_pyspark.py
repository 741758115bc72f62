"""PySpark stays optional: spark-als registers, loads and serves without it, and training
says what to install."""

from __future__ import annotations

import subprocess
import sys

WITHOUT_PYSPARK = """
import sys
class _NoSpark:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pyspark", "py4j"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, _NoSpark())
"""

CODE = """
import tempfile
import numpy as np
import scipy.sparse as sp
import rekko.spark
from rekko.data.demo import load_demo
from rekko.data.idmap import IdMap
from rekko.errors import ModelError
from rekko.models import available_models, create_model, load_model
from rekko.models.spark_als import SparkALS, SparkALSParams

assert "spark-als" in available_models()
try:
    create_model("spark-als").fit(load_demo(n_users=20, n_items=10, seed=1))
except ModelError as error:
    assert "rekko[spark]" in str(error) and "spark-als" in str(error), error
else:
    raise AssertionError("spark-als trained without PySpark")
try:
    rekko.spark.train_spark_als("events.csv", output="model")
except ModelError as error:
    assert "rekko[spark]" in str(error), error
else:
    raise AssertionError("train_spark_als ran without PySpark")

rng = np.random.default_rng(0)
model = SparkALS.from_factors(
    SparkALSParams(factors=3),
    users=IdMap(["a", "b"], "str"),
    items=IdMap([1, 2, 3, 4], "int"),
    seen=sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32)),
    user_factors=rng.standard_normal((2, 3)).astype(np.float32),
    item_factors=rng.standard_normal((4, 3)).astype(np.float32),
    rating_stats=None,
    metadata={"engine": "spark"},
)
folder = model.save(tempfile.mkdtemp() + "/model")
loaded = load_model(folder)
recs = loaded.recommend(["a", "b"], k=2)
assert len(recs) == 4 and 1 not in set(recs[recs.user_id == "a"].item_id), recs
assert "pyspark" not in sys.modules
print("ok")
"""


def test_spark_als_without_pyspark() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PYSPARK + CODE], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
