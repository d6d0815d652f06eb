# One image for the service and the trainer.
#   GPU hosts (default): torch's CUDA wheel carries its own CUDA runtime; the host needs the
#   NVIDIA driver and container toolkit.   docker build -t pax .
#   CPU-only:   docker build -t pax:cpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
#   Other base: --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 (needs python3)
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# dependencies first (cached layer): the exact pins of pyproject.toml
COPY pyproject.toml README.md ./
RUN pip install --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple torch==2.13.0
COPY pax ./pax
COPY trainer ./trainer
COPY runner ./runner
COPY web ./web
RUN pip install .

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="pax" \
      org.opencontainers.image.description="parameter-allocation experiments: runner + trainer"
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    PAX_DB=/var/lib/pax/pax.db PAX_HOST=0.0.0.0 PAX_PORT=8000 \
    PAX_RUNS_ROOT=/var/lib/pax/runs PAX_REPORTS_ROOT=/var/lib/pax/reports
RUN useradd --create-home --uid 10001 pax && mkdir -p /var/lib/pax /app && chown pax /var/lib/pax
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=pax migrations ./migrations
COPY --chown=pax configs ./configs
COPY --chown=pax scripts ./scripts
COPY --chown=pax run_experiment.py eval_smallbench.py lr_find.py ./
COPY --chown=pax docker/entrypoint.sh /usr/local/bin/pax-entrypoint
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PAX_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["pax-entrypoint"]
CMD ["serve"]
