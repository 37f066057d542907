# The compressor as a job: builds the variants (fp32 reference, fp16, int8, pruned ...) with their cards
# into the repository at /models, atomically per variant, then exits. torch is the pinned CPU build.
#   docker build -f deploy/docker/compressor.Dockerfile -t varigate-compressor .
#   docker run --rm -v models:/models varigate-compressor minilm --out /models
FROM python:3.11-slim-bookworm
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY gateway ./gateway
COPY varigate ./varigate
COPY loadtest ./loadtest
COPY compressor ./compressor
RUN python -m venv /opt/varigate \
    && /opt/varigate/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt \
        --extra-index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && /opt/varigate/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt ".[compress]" \
    && useradd --system --uid 10001 --create-home --home-dir /home/varigate varigate \
    && mkdir -p /models && chown 10001 /models
ENV PATH=/opt/varigate/bin:$PATH PYTHONUNBUFFERED=1 HOME=/home/varigate
USER 10001
VOLUME ["/models"]
ENTRYPOINT ["varigate", "compress"]
CMD ["default", "--out", "/models"]
