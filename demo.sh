#!/usr/bin/env bash
# The main job end to end on a bundled model: compile it, show the plan and its predicted cost,
# run the reference executor, then the server and the client as two processes over a loopback
# QUIC connection (the client pins the server's certificate), and check that the two-party
# output equals the reference output bit for bit.
# Usage: ./demo.sh [model.onnx] [input.npy]
# Honours CARGO_TARGET_DIR: the binaries and the demo's files go under it (default: target/).
set -euo pipefail
# Paths given relative to where the script was started from stay valid after the cd below.
absolute() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    CARGO_TARGET_DIR=$(absolute "$CARGO_TARGET_DIR")
    export CARGO_TARGET_DIR
fi
model=${1:+$(absolute "$1")}
input=${2:+$(absolute "$2")}
cd "$(dirname "$0")"
model=${model:-models/resnet_qdq_u8s8.onnx}
input=${input:-models/inputs/one.npy}
target=${CARGO_TARGET_DIR:-target}
bin=$target/debug
out=$target/demo
mkdir -p "$out"

echo "== building heqc and heq-run into $bin (debug profile; the protocol crates are optimized)" >&2
echo "   The first build compiles about 300 crates (tract, fhe.rs, cryprot, s2n-quic) and takes" >&2
echo "   about 15-20 minutes on 2 cores; after that a build takes seconds." >&2
cargo build --locked -p heqc -p heq-runtime --bins

echo "== heqc compile $model" >&2
"$bin/heqc" compile "$model" -o "$out/server.plan" --client-out "$out/client.plan"

echo "== heqc explain (what the optimizer decided, what it will cost)" >&2
"$bin/heqc" explain "$out/server.plan"

echo "== heq-run --mode plain (reference executor)" >&2
"$bin/heq-run" --plan "$out/server.plan" --mode plain --input "$input" --output "$out/plain.npy"

echo "== heq-run --role server (weights) and --role client (input), over loopback" >&2
rm -f "$out/server.log"
"$bin/heq-run" --plan "$out/server.plan" --role server --listen 127.0.0.1:0 --sessions 1 \
    --timeout 120 --report "$out/server.json" 2>"$out/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
line=""
for _ in $(seq 1 600); do
    line=$(grep -m1 'listening on' "$out/server.log" || true)
    [ -n "$line" ] && break
    kill -0 $server 2>/dev/null || { cat "$out/server.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$line" ] || { echo "the server did not start" >&2; cat "$out/server.log" >&2; exit 1; }
addr=$(sed -E 's/.*listening on ([^,]+),.*/\1/' <<<"$line")
fingerprint=$(sed -E 's/.*fingerprint sha256:([0-9a-fA-F]+).*/\1/' <<<"$line")
echo "$line" >&2
"$bin/heq-run" --plan "$out/client.plan" --role client --connect "$addr" \
    --server-fingerprint "$fingerprint" --timeout 120 --input "$input" --output "$out/net.npy" \
    --report "$out/client.json"
wait $server
trap - EXIT

if cmp -s "$out/plain.npy" "$out/net.npy"; then
    echo "== two-party output == reference output, bit for bit ($out/net.npy)" >&2
else
    echo "== MISMATCH between the two-party run and the reference executor" >&2
    exit 1
fi
