"""Helpers of the Spark package that need no JVM: URL conversion, redaction, local masters."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rekko.errors import DataError
from rekko.spark.package import package_zip
from rekko.spark.session import _local_threads, default_config
from rekko.spark.sources import jdbc_from_sqlalchemy, redact_jdbc


def test_sqlalchemy_urls_become_jdbc_urls_with_credentials_as_options() -> None:
    url, options = jdbc_from_sqlalchemy("postgresql+psycopg://bob:s3cret@db.example:5433/shop")
    assert url == "jdbc:postgresql://db.example:5433/shop"
    assert options == {"driver": "org.postgresql.Driver", "user": "bob", "password": "s3cret"}
    url, options = jdbc_from_sqlalchemy("mysql+pymysql://bob@db/shop")
    assert url == "jdbc:mysql://db:3306/shop" and "password" not in options
    assert jdbc_from_sqlalchemy("sqlite:///data/shop.db")[0] == "jdbc:sqlite:data/shop.db"
    with pytest.raises(DataError, match="oracle"):
        jdbc_from_sqlalchemy("oracle://db/shop")


def test_passwords_never_show_in_jdbc_labels() -> None:
    assert "s3cret" not in redact_jdbc("jdbc:postgresql://db/shop?user=bob&password=s3cret")
    assert "s3cret" not in redact_jdbc("jdbc:mysql://bob:s3cret@db/shop")
    assert redact_jdbc("jdbc:derby:memory:x") == "jdbc:derby:memory:x"


def test_local_masters_get_small_shuffles_and_no_ui() -> None:
    assert _local_threads("local") == 1
    assert _local_threads("local[3]") == 3
    assert _local_threads("local[*]") == (os.cpu_count() or 1)
    assert _local_threads("spark://host:7077") is None
    assert default_config("local[2]")["spark.sql.shuffle.partitions"] == "2"
    assert "spark.sql.shuffle.partitions" not in default_config("yarn")


def test_the_package_zip_is_reproducible_and_imports_from_itself(tmp_path: Path) -> None:
    first = package_zip(tmp_path / "a" / "rekko.zip")
    second = package_zip(tmp_path / "b" / "rekko.zip")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
    assert "rekko/__init__.py" in names and "rekko/spark/package.py" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    code = "import sys; sys.path.insert(0, sys.argv[1]); import rekko.spark.package, rekko; "
    code += "print(rekko.__file__)"
    done = subprocess.run(
        [sys.executable, "-I", "-c", code, str(first)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(first / "rekko" / "__init__.py")
