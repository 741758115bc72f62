"""Apache Spark for data that outgrows one machine: ALS training and batch recommendations.

* :func:`train_spark_als`: read CSV, Parquet or a JDBC table on any Spark master, map ids and
  train ALS (explicit or implicit) in Spark, and write a ``spark-als`` model folder that
  ``recommend``, ``evaluate``, export and the service use without Spark;
* :func:`spark_recommend_all`: top-K for every user of a factor model, computed in Spark and
  written to Parquet.

PySpark is optional (``pip install 'rekko[spark]'``, plus Java 17 or 21): this package imports
without it and each function raises a clear :class:`~rekko.errors.ModelError` when it is
missing. See ``docs/spark.md`` for running on a cluster.
"""

from rekko.spark.als import train_spark_als
from rekko.spark.recommend import spark_recommend_all
from rekko.spark.session import spark_session

__all__ = ["spark_recommend_all", "spark_session", "train_spark_als"]
