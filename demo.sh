#!/usr/bin/env bash
# The main job end to end on a bundled model: compile it, show the plan and its predicted cost,
# run the reference executor and both parties, and check that the two agree bit for bit.
# Usage: ./demo.sh [model.onnx] [input.npy]
set -euo pipefail
cd "$(dirname "$0")"
model=${1:-models/resnet_qdq_u8s8.onnx}
input=${2:-models/inputs/one.npy}
out=target/demo
mkdir -p "$out"

echo "== building heqc and heq-run (debug profile; the protocol crates are optimized)" >&2
cargo build --quiet -p heqc -p heq-runtime --bins
bin=target/debug

echo "== heqc compile $model" >&2
"$bin/heqc" compile "$model" -o "$out/server.plan" --client-out "$out/client.plan"

echo "== heqc explain (what the optimizer decided, what it will cost)" >&2
"$bin/heqc" explain "$out/server.plan"

echo "== heq-run --mode plain (reference executor)" >&2
"$bin/heq-run" --plan "$out/server.plan" --mode plain --input "$input" --output "$out/plain.npy"

echo "== heq-run --mode sim (server and client, real HE and OT, in one process)" >&2
"$bin/heq-run" --plan "$out/server.plan" --mode sim --input "$input" --output "$out/sim.npy"

if cmp -s "$out/plain.npy" "$out/sim.npy"; then
    echo "== two-party output == reference output, bit for bit ($out/sim.npy)" >&2
else
    echo "== MISMATCH between the two-party run and the reference executor" >&2
    exit 1
fi
