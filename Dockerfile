# One image for the service, the trainer and the workers. Everything the code reads ships inside
# the installed package (migrations, price table, SkyPilot template, plans); everything it
# writes lives under /var/lib/pax (ledger, runs, reports, data, caches): mount one volume there.
#   make image                    docker when a daemon answers, else podman; a local Debian base
#                                 when no base image can be pulled (docker/build-image.sh)
#   GPU hosts (default): torch's CUDA wheel carries its own CUDA runtime; the host needs the
#   NVIDIA driver and container toolkit.   docker build -t pax .
#   CPU-only:   docker build -t pax:cpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
#               or wheels made beforehand in docker/wheelhouse/ (make image does it: a CPU
#               torch and every pinned dependency), for a machine without the PyTorch index
#   SkyPilot:   docker build -t pax:sky --target sky .   (passwordless sudo for bucket mounts)
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# docker/wheelhouse/: wheels made beforehand. When it holds torch, everything is installed from
# it alone (no index at all); empty (as committed), torch comes from TORCH_INDEX, the rest from PyPI.
COPY docker/wheelhouse/ /wheelhouse/
COPY pyproject.toml README.md ./
RUN if ls /wheelhouse/torch-*.whl >/dev/null 2>&1; then \
      pip install --no-index --find-links /wheelhouse torch==2.13.0; \
    else \
      pip install --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple torch==2.13.0; \
    fi
COPY pax ./pax
COPY trainer ./trainer
COPY runner ./runner
COPY web ./web
COPY migrations ./migrations
# a wheel, not the source tree: the image runs what `pip install` ships
# (with the postgres extra: the same image serves a SQLite file or a PostgreSQL ledger;
# every dependency is pinned in pyproject.toml, which hadolint can't see)
# hadolint ignore=DL3013
RUN if ls /wheelhouse/torch-*.whl >/dev/null 2>&1; then offline="--no-index"; else offline=""; fi \
    && pip wheel $offline --find-links /wheelhouse --no-deps --wheel-dir /wheels . \
    && pip install $offline --find-links /wheelhouse \
      "$(echo /wheels/parameter_allocation_experiments-*.whl)[postgres]"

FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="pax" \
      org.opencontainers.image.description="parameter-allocation experiments: runner + trainer"
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    PAX_DB=/var/lib/pax/pax.db PAX_HOST=0.0.0.0 PAX_PORT=8000 \
    PAX_RUNS_ROOT=/var/lib/pax/runs PAX_REPORTS_ROOT=/var/lib/pax/reports \
    PAX_CACHE_DIR=/var/lib/pax/cache HOME=/var/lib/pax \
    PAX_WORKER_ALIVE_FILE=/tmp/pax-worker.alive
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
# the service's health; a worker's container runs `pax-entrypoint healthy`, which reads the
# worker's own alive file instead (docker/entrypoint.sh)
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["pax-entrypoint", "healthy"]
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
