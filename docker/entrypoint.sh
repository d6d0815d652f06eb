#!/bin/sh
# pax container entrypoint: `serve` (migrate, then run the service), `train ...` (one trainer
# job, as launched by the Docker launcher), `worker ...` (pull runs from a service), `data`
# (fetch the data and build the tokenizers under /var/lib/pax/data), `healthy` (the image's
# HEALTHCHECK: a worker by its alive file, the service by /healthz), or any other command.
# Every branch ends in `exec`, so the command is the process the container's init (compose's
# `init: true`) signals: SIGTERM reaches the trainer, or the worker, which passes it on; each
# trainer checkpoints and exits 75.
set -eu
# The data mirror: a URL as it is; a path this container has as it is; else the host folder
# compose mounts at /mirror (PAX_DATA_MIRROR_DIR), when it holds something; else none (a host
# path given as PAX_DATA_MIRROR means nothing in here: said, then the official sources).
mounted=$(ls -A /mirror 2>/dev/null | grep -v '^\.gitkeep$' || true)
case "${PAX_DATA_MIRROR:-}" in
  http://*|https://*) ;;
  *)
    if [ -n "${PAX_DATA_MIRROR:-}" ] && [ -e "$PAX_DATA_MIRROR" ]; then
      :
    elif [ -n "$mounted" ]; then
      export PAX_DATA_MIRROR=/mirror
    else
      if [ -n "${PAX_DATA_MIRROR:-}" ]; then
        echo "pax-entrypoint: PAX_DATA_MIRROR=$PAX_DATA_MIRROR is not in this container; mount a host folder with PAX_DATA_MIRROR_DIR (compose) or -v DIR:/mirror:ro" >&2
      fi
      unset PAX_DATA_MIRROR
    fi
    ;;
esac
cmd="${1:-serve}"
[ "$#" -gt 0 ] && shift
case "$cmd" in
  serve)
    pax db upgrade --db "${PAX_DB}"
    exec pax serve "$@"
    ;;
  train)
    exec pax train "$@"
    ;;
  worker)
    exec pax worker "$@"
    ;;
  healthy)
    # a worker touches its alive file at start, at every answer from the service and while
    # its trainers run; the service answers /healthz
    if [ -e "${PAX_WORKER_ALIVE_FILE:-/nonexistent}" ]; then
      exec python - <<'PY'
import os, sys, time
age = time.time() - os.path.getmtime(os.environ["PAX_WORKER_ALIVE_FILE"])
sys.exit(0 if age < float(os.environ.get("PAX_WORKER_ALIVE_S", "300")) else 1)
PY
    fi
    exec python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PAX_PORT', '8000'), timeout=4)"
    ;;
  data)
    pax data wikitext --output data/wikitext-2
    pax data smallbench --output data/smallbench --corpus data/wikitext-2/train.txt
    for v in ${PAX_VOCABS:-16000 8000}; do
      pax tokenize --input data/wikitext-2 --vocab-size "$v" --output data/lm_tokenized \
        --reports reports/data
    done
    ;;
  *)
    exec "$cmd" "$@"
    ;;
esac
