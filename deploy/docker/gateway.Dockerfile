# The varigate gateway: KServe v2 / Triton protocol over HTTP (8000) and gRPC (8001), /metrics on 8002.
# Slim: the serving runtime only (onnxruntime, no torch). Runs as an unprivileged user; the repository is
# mounted at /models (read-only is enough). Build from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t varigate-gateway .
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY gateway ./gateway
COPY varigate ./varigate
COPY loadtest ./loadtest
# constraints.txt pins every version the project is tested with
RUN python -m venv /opt/varigate \
    && /opt/varigate/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt .

FROM python:3.11-slim-bookworm
COPY --from=build /opt/varigate /opt/varigate
RUN useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin varigate
ENV PATH=/opt/varigate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VARIGATE_REPOSITORY=/models \
    VARIGATE_HTTP_HOST=0.0.0.0 \
    VARIGATE_GRPC_HOST=0.0.0.0 \
    VARIGATE_METRICS_HOST=0.0.0.0 \
    VARIGATE_HTTP_PORT=8000 \
    VARIGATE_GRPC_PORT=8001 \
    VARIGATE_METRICS_PORT=8002
USER 10001
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
# SIGTERM drains: listeners close, accepted requests finish (VARIGATE_EXIT_TIMEOUT_SECS, 30 s)
STOPSIGNAL SIGTERM
ENTRYPOINT ["varigate", "serve"]
