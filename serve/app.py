"""The Ray Serve application, for ``serve run`` / ``serve deploy`` (see serve/config.yaml).

    serve run serve/config.yaml                # from the repository root
    serve run serve.app:build_app model_alias=candidate

The deployments and the method live in ``tumorseg.serving`` and ``tumorseg.inference``.
"""

from tumorseg.serving.app import build_app

__all__ = ["build_app"]
