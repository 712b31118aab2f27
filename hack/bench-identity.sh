#!/usr/bin/env bash
# Prints the identity benchmarks and a closing RESULT line:
# classification of a chain (ns/op) and full mTLS handshakes per second on loopback.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="$(go test -run='^$' -bench='BenchmarkClassify|BenchmarkHandshake' -benchmem -benchtime=2s ./identity/ ./identity/mtls/)"
echo "$out"
classify=$(awk '/^BenchmarkClassify/{print $3}' <<<"$out")
handshake=$(awk '/^BenchmarkHandshake/{print $3}' <<<"$out")
echo "RESULT classify_ns=$(printf '%.0f' "$classify") handshakes_per_s=$(awk -v ns="$handshake" 'BEGIN{printf "%.0f", 1e9/ns}')"
