#!/usr/bin/env bash
# Runs one jaxrobust command on every worker of a Cloud TPU VM slice.
#
# Every worker runs the same program; `jax.distributed.initialize()` (called by
# `python -m jaxrobust.main` on TPU) joins them, each host reads its share of
# the data, and process 0 writes records, reports and checkpoints.
#
# Usage:
#   ./run_tpu.sh --tpu NAME --zone ZONE [options] -- COMMAND...
#
# Options:
#   --tpu NAME            TPU VM name (required)
#   --zone ZONE           GCP zone, e.g. us-central2-b (required)
#   --project PROJECT     GCP project (default: gcloud's configured project)
#   --create TYPE         create the slice first, e.g. v4-32
#   --version VERSION     TPU software version for --create (default: tpu-ubuntu2204-base)
#   --sync                copy this checkout to ~/jaxrobust on every worker
#   --install             install jax[tpu] and this package (pip install -e .) on every worker
#   --logs DIR            collect per-worker logs into DIR (default: logs/<tpu>-<time>)
#   --dry-run             print every command instead of running it
#   -h, --help            this message
#
# Example (Flan-T5-XXL over the RE and QA mixtures on a v4-32):
#   ./run_tpu.sh --tpu rob-v4-32 --zone us-central2-b --create v4-32 --sync --install -- \
#     python -m jaxrobust.main eval \
#       --gin_file=gin_configs/runs/eval.gin --gin_file=gin_configs/models/flan_t5_xxl.gin \
#       --gin.CHECKPOINT_DIR="'gs://my-bucket/flan-t5-xxl'" \
#       --gin.OUTPUT_DIR="'gs://my-bucket/runs/flan_t5_xxl'"
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

die_usage() {
  echo "run_tpu.sh: $1" >&2
  echo >&2
  usage >&2
  exit 2
}

TPU="" ZONE="" PROJECT="" CREATE="" VERSION="tpu-ubuntu2204-base" SYNC=0 INSTALL=0 LOGS="" DRY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tpu) [[ $# -ge 2 ]] || die_usage "--tpu needs a value"; TPU="$2"; shift 2 ;;
    --zone) [[ $# -ge 2 ]] || die_usage "--zone needs a value"; ZONE="$2"; shift 2 ;;
    --project) [[ $# -ge 2 ]] || die_usage "--project needs a value"; PROJECT="$2"; shift 2 ;;
    --create) [[ $# -ge 2 ]] || die_usage "--create needs an accelerator type"; CREATE="$2"; shift 2 ;;
    --version) [[ $# -ge 2 ]] || die_usage "--version needs a value"; VERSION="$2"; shift 2 ;;
    --sync) SYNC=1; shift ;;
    --install) INSTALL=1; shift ;;
    --logs) [[ $# -ge 2 ]] || die_usage "--logs needs a directory"; LOGS="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die_usage "unknown option '$1' (the command goes after --)" ;;
  esac
done
[[ -n "$TPU" ]] || die_usage "missing --tpu NAME"
[[ -n "$ZONE" ]] || die_usage "missing --zone ZONE"
[[ $# -gt 0 ]] || die_usage "missing the command to run (after --)"

LOGS="${LOGS:-logs/${TPU}-$(date +%Y%m%d-%H%M%S)}"
GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=(--zone "$ZONE")
[[ -n "$PROJECT" ]] && WHERE+=(--project "$PROJECT")

# Quote the user's command once, so it survives the remote shell intact.
REMOTE_CMD=$(printf '%q ' "$@")
REMOTE_CMD="${REMOTE_CMD% }"

run() {
  if [[ $DRY -eq 1 ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

ssh_all() {
  run "${GCLOUD[@]}" ssh "$TPU" "${WHERE[@]}" --worker=all --command "$1"
}

if [[ -n "$CREATE" ]]; then
  run "${GCLOUD[@]}" create "$TPU" "${WHERE[@]}" --accelerator-type "$CREATE" --version "$VERSION"
fi

if [[ $SYNC -eq 1 ]]; then
  # The checkout without build outputs; shared data is read from its own path.
  run tar --exclude=.git --exclude=__pycache__ --exclude=outputs -czf /tmp/jaxrobust-src.tgz .
  run "${GCLOUD[@]}" scp /tmp/jaxrobust-src.tgz "$TPU":/tmp/ "${WHERE[@]}" --worker=all
  ssh_all "mkdir -p ~/jaxrobust && tar -xzf /tmp/jaxrobust-src.tgz -C ~/jaxrobust"
fi

if [[ $INSTALL -eq 1 ]]; then
  ssh_all "cd ~/jaxrobust && pip install -U 'jax[tpu]' && pip install -e ."
fi

# Each worker logs to its own file; the launch waits for all of them.
ssh_all "cd ~/jaxrobust && mkdir -p logs && ${REMOTE_CMD} > logs/worker-\$(hostname).log 2>&1; echo exit=\$? >> logs/worker-\$(hostname).log"

run mkdir -p "$LOGS"
run "${GCLOUD[@]}" scp "$TPU":~/jaxrobust/logs/'*' "$LOGS"/ "${WHERE[@]}" --worker=all
[[ $DRY -eq 1 ]] || echo "per-worker logs in $LOGS"
