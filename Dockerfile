# One image for the service, the trainer and the workers. Everything the code reads ships inside
# the installed package (migrations, price table, SkyPilot template, plans); everything it
# writes lives under /var/lib/pax (ledger, runs, reports, data, caches): mount one volume there.
#   GPU hosts (default): torch's CUDA wheel carries its own CUDA runtime; the host needs the
#   NVIDIA driver and container toolkit.   docker build -t pax .
#   CPU-only:   docker build -t pax:cpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
#   SkyPilot:   docker build -t pax:sky --target sky .   (passwordless sudo for bucket mounts)
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
# a wheel, not the source tree: the image runs what `pip install` ships
# (with the postgres extra: the same image serves a SQLite file or a PostgreSQL ledger)
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install "$(echo /wheels/parameter_allocation_experiments-*.whl)[postgres]"

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="pax" \
      org.opencontainers.image.description="parameter-allocation experiments: runner + trainer"
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    PAX_DB=/var/lib/pax/pax.db PAX_HOST=0.0.0.0 PAX_PORT=8000 \
    PAX_RUNS_ROOT=/var/lib/pax/runs PAX_REPORTS_ROOT=/var/lib/pax/reports \
    PAX_CACHE_DIR=/var/lib/pax/cache HOME=/var/lib/pax
RUN useradd --uid 10001 --home-dir /var/lib/pax --no-create-home pax \
    && mkdir -p /var/lib/pax/data /var/lib/pax/runs /var/lib/pax/cache /var/lib/pax/checkpoints \
    && chown -R pax /var/lib/pax
COPY --from=build /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/pax-entrypoint
# relative paths of the configs (data/wikitext-2, data/lm_tokenized, data/smallbench) resolve
# under the volume
WORKDIR /var/lib/pax
VOLUME ["/var/lib/pax"]
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PAX_PORT', '8000'), timeout=4)"]
ENTRYPOINT ["pax-entrypoint"]
CMD ["serve"]

# SkyPilot runs its jobs' commands as the image's user and mounts buckets with sudo: the same
# image, with passwordless sudo for that user. The run script writes only to /pax and /tmp.
FROM runtime AS sky
USER 0
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends sudo fuse3 \
    && rm -rf /var/lib/apt/lists/* \
    && echo "pax ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/pax && chmod 0440 /etc/sudoers.d/pax
USER 10001

FROM runtime
