"""One Serve application for every serving test (Serve start-up costs ~10 s)."""

from __future__ import annotations

import pytest
from ray_nodes import free_port
from serving_helpers import app_config, deploy


@pytest.fixture(scope="package")
def service(ray_session, champion_store):
    """The app on a free loopback port; Serve is shut down after the serving tests
    (its replicas hold CPUs the training tests need)."""
    from ray import serve

    port = free_port()
    deploy(app_config(champion_store, port))
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
