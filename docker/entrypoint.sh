#!/bin/sh
# pax container entrypoint: `serve` (migrate, then run the service), `train ...` (one trainer
# job, as launched by the Docker or SkyPilot launcher), `data` (fetch data and tokenizers), or
# any other command as given.
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
    python scripts/download_wikitext.py --output data/wikitext-2
    python scripts/download_smallbench.py --output data/smallbench
    for v in ${PAX_VOCABS:-16000 8000}; do
      python scripts/preprocess_lm.py --input data/wikitext-2 --vocab_size "$v" --output data/lm_tokenized
    done
    ;;
  *)
    exec "$cmd" "$@"
    ;;
esac
