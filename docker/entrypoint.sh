#!/bin/sh
# pax container entrypoint: `serve` (migrate, then run the service), `train ...` (one trainer
# job, as launched by the Docker launcher), `worker ...` (pull runs from a service), `data`
# (fetch the data and build the tokenizers under /var/lib/pax/data), or any other command.
# Every branch ends in `exec`, so the command is the process the container's init (compose's
# `init: true`) signals: SIGTERM reaches the trainer, or the worker, which passes it on; each
# trainer checkpoints and exits 75.
set -eu
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
