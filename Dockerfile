# The image every cluster file uses: Ray's GPU image (CUDA, Python 3.11) plus tumorseg.
#   docker build -t registry.example.com/tumorseg:0.1.0 . && docker push registry.example.com/tumorseg:0.1.0
# The Ray version must match the one pyproject.toml resolves (2.60 here) on every node.
FROM rayproject/ray:2.60.0-py311-gpu

WORKDIR /home/ray/tumorseg
# Dependencies first, so code edits do not reinstall them. The GPU image's pip resolves
# torch's CUDA build from PyPI; psycopg2 and boto3 let MLflow reach PostgreSQL and S3.
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users tumorseg/ tumorseg/
RUN pip install --no-cache-dir . "psycopg2-binary>=2.9" "boto3>=1.34"

# Entry points: jobs/ (ray job submit) and serve/ (import path serve.app:build_app),
# resolved from this working directory.
COPY --chown=ray:users jobs/ jobs/
COPY --chown=ray:users serve/ serve/
COPY --chown=ray:users benchmarks/ benchmarks/
ENV RAY_USAGE_STATS_ENABLED=0 \
    MLFLOW_DISABLE_TELEMETRY=true \
    PYTHONPATH=/home/ray/tumorseg
