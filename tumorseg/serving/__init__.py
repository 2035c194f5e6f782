"""Online segmentation with Ray Serve (``serve/app.py``, ``serve/config.yaml``)."""
