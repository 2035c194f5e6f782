"""Where the MLflow store is: one rule for every job, worker and replica."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # resolving a URI needs no MLflow
    from mlflow import MlflowClient


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The MLflow tracking URI: ``explicit`` > ``$MLFLOW_TRACKING_URI`` > ``./mlflow.db``.

    The default is ``sqlite:///<absolute path of ./mlflow.db>``; relative SQLite paths
    (``sqlite:///mlflow.db``) are made absolute too, so that Ray workers running in
    other working directories open the same database.
    """
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri.strip():
        return f"sqlite:///{Path('mlflow.db').resolve()}"
    return _absolute_sqlite(uri.strip())


def registry_client(uri: str) -> MlflowClient:
    """A client whose tracking and registry URIs are both ``uri`` (never the process's)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _absolute_sqlite(uri: str) -> str:
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path = uri[len(prefix) :]
    if not path or path.startswith("/") or path.startswith(":memory:"):
        return uri
    return f"{prefix}{Path(path).resolve()}"
