"""TensorFlow stays optional: rekko, the registry and the export package import without it."""

from __future__ import annotations

import subprocess
import sys
import time

# A finder that makes `import tensorflow` / `import keras` fail, as on a machine without them.
WITHOUT_TF = """
import sys
class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "ai_edge_litert"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, _NoTensorFlow())
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TF + code], capture_output=True, text=True, timeout=120
    )


def test_models_register_and_fail_clearly_without_tensorflow() -> None:
    code = """
import rekko.export
from rekko.data.demo import load_demo
from rekko.errors import ModelError
from rekko.models import available_models, create_model
names = set(available_models())
assert {"two-tower", "multitask", "ranking", "neural-mf", "neural-mlp"} <= names, names
data = load_demo(n_users=30, n_items=20, seed=1)
for name in ("two-tower", "multitask", "ranking", "neural-mf", "neural-mlp"):
    try:
        create_model(name).fit(data)
    except ModelError as error:
        assert "rekko[tf]" in str(error) and name in str(error), error
    else:
        raise AssertionError(name + " trained without TensorFlow")
assert "tensorflow" not in sys.modules and "keras" not in sys.modules
print("ok")
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_import_rekko_does_not_load_tensorflow_and_is_fast() -> None:
    code = "import sys, time; t = time.perf_counter(); import rekko; " + (
        "print(time.perf_counter() - t, 'tensorflow' in sys.modules)"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert time.perf_counter() - started < 30
    seconds, loaded = result.stdout.split()
    assert loaded == "False"
    assert float(seconds) < 0.5
