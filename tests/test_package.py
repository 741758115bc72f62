from __future__ import annotations

import subprocess
import sys


def test_import_rekko_is_light() -> None:
    """`import rekko` must not pull in pandas, the models or TensorFlow (they load on use)."""
    code = (
        "import sys, rekko; "
        "heavy = [m for m in ('pandas', 'scipy', 'tensorflow', 'implicit', 'rekko.models') "
        "if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_lazy_names_resolve() -> None:
    import rekko

    assert rekko.Dataset.__name__ == "Dataset"
    assert rekko.IdMap.__name__ == "IdMap"
