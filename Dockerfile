# One image for every dispatcher service (api, worker, dashboard, sandbox); see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DISPATCHER_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY dispatcher ./dispatcher
COPY workers ./workers
RUN pip install ".[dashboard]" \
    && useradd --create-home --uid 10001 dispatcher \
    && mkdir -p /data && chown dispatcher /data

USER dispatcher
EXPOSE 8000 9181 8100
CMD ["dispatcher", "serve", "--host", "0.0.0.0", "--port", "8000"]
