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


_SQLITE = "sqlite:///"


def sqlite_path(uri: str) -> str | None:
    """The database file a ``sqlite:///`` URI names (as written); ``None`` for other
    stores and for an in-memory database."""
    if not uri.startswith(_SQLITE):
        return None
    path = uri[len(_SQLITE) :]
    return None if path.startswith(":memory:") else path


def _absolute_sqlite(uri: str) -> str:
    path = sqlite_path(uri)
    if not path or path.startswith("/"):
        return uri
    return f"{_SQLITE}{Path(path).resolve()}"
