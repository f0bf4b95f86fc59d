#!/usr/bin/env bash
# Loom demo: loomd on an embedded LMDB store in a scratch directory, the
# payment and batch example processors, and two flows driven by loomctl.
#   engine/demo/run-demo.sh BIN_DIR      (make demo passes build/bin)
# Everything it starts is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

BIN_DIR=$(cd "${1:-build/bin}" && pwd)
DEMO_DIR=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/loom-demo-XXXXXX")
PIDS=()

log() { printf '\n== %s\n' "$*"; }

show_logs() {
    for f in "$WORK"/*.log; do
        [ -f "$f" ] || continue
        echo "----- $(basename "$f") (last 40 lines) -----"
        tail -n 40 "$f"
    done
}

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ]; then
        echo "demo failed (exit $rc); logs follow" >&2
        show_logs >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() {
    [ -x "$BIN_DIR/$1" ] || { echo "missing $BIN_DIR/$1: build first (make)" >&2; exit 1; }
}

# wait_for DESCRIPTION SECONDS COMMAND...: retry COMMAND until it succeeds.
wait_for() {
    local what=$1 secs=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "timed out waiting for $what" >&2
            return 1
        fi
        sleep 0.1
    done
}

# Shows the command as one would type it, then runs it.
ctl() {
    local shown='$ loomctl' a
    for a in "$@"; do
        case $a in
        *[!A-Za-z0-9_./:@=-]*) shown+=" '$a'" ;;
        *) shown+=" $a" ;;
        esac
    done
    echo "$shown"
    "$BIN_DIR/loomctl" "$@"
}

history_has() { "$BIN_DIR/loomctl" history "$1" "$2" | grep -q "$3"; }

need loomd
need loomctl
need loom-payment-processor
export LOOM_ADDR="unix:$WORK/loomd.sock"

log "starting processors and loomd in $WORK"
"$BIN_DIR/loom-payment-processor" --listen "unix:$WORK/payment.sock" \
    --provider-delay-ms 300 2>"$WORK/payment.log" &
PIDS+=($!)
HAVE_BATCH=0
if [ -x "$BIN_DIR/loom-batch-processor" ]; then
    "$BIN_DIR/loom-batch-processor" --listen "unix:$WORK/batch.sock" --poll-interval-ms 300 \
        --object-fail-rate 0.3 2>"$WORK/batch.log" &
    PIDS+=($!)
    HAVE_BATCH=1
fi
wait_for "the payment processor" 10 test -S "$WORK/payment.sock"
[ "$HAVE_BATCH" = 0 ] || wait_for "the batch processor" 10 test -S "$WORK/batch.sock"
sed "s|@WORK@|$WORK|g" "$DEMO_DIR/loomd.yaml.in" >"$WORK/loomd.yaml"
"$BIN_DIR/loomd" --config "$WORK/loomd.yaml" 2>"$WORK/loomd.log" &
LOOMD_PID=$!
PIDS+=("$LOOMD_PID")
wait_for "loomd" 15 "$BIN_DIR/loomctl" --timeout-ms 1000 ns-list

log "payment: invoice, pay, capture by the processor's poll timer, refund"
ctl start payment inv-1001 '{"amount": 1500, "currency": "EUR", "due_in_ms": 60000}'
ctl call payment inv-1001 '{"op": "pay"}'
echo "(waiting for the provider: the machine's timer polls it)"
wait_for "the payment capture" 20 history_has payment inv-1001 payment_captured
ctl call payment inv-1001 '{"op": "refund", "amount": 500}'
ctl get payment inv-1001
log "payment history"
ctl history payment inv-1001

if [ "$HAVE_BATCH" = 1 ]; then
    log "batch: register the namespace at run time, commit objects, poll until done"
    ctl ns-register batch --processor "unix:$WORK/batch.sock" --step-timeout-ms 5000 \
        --range-limit 100 --range-forward \
        --retry-max-attempts 5 --retry-max-total-ms 0
    ctl start batch batch-7
    ctl call batch batch-7 '{"op": "commit", "content_type": "product", "objects": ["sku-1", "sku-2"]}'
    ctl call batch batch-7 '{"op": "commit", "content_type": "product", "objects": ["sku-3"]}'
    ctl call batch batch-7 '{"op": "send"}'
    echo "(waiting for the remote: the machine's timer polls it while it is ongoing)"
    wait_for "the batch to finish" 30 history_has batch batch-7 '"type":"done"'
    ctl call batch batch-7 '{"op": "get"}'
    log "batch history"
    ctl history batch batch-7
else
    log "batch: skipped, $BIN_DIR/loom-batch-processor is not built"
fi

log "machines"
ctl list payment
[ "$HAVE_BATCH" = 0 ] || ctl list batch

log "shutting down loomd (SIGTERM: finish or abandon steps, commit, close the store)"
kill -TERM "$LOOMD_PID"
wait "$LOOMD_PID"
echo "loomd exited with status $?"
echo
echo "demo finished"
