"""The Airflow deployment the scheduler tests share (see airflow_cluster.py)."""

from tests.dags.airflow_cluster import _airflow_deployment, airflow_cluster  # noqa: F401
