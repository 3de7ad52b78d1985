#!/usr/bin/env bash
# HTTP load on loopback against five servers built from the same binary: the plugin path with
# its rendered-answer cache and without it (the built-in protocol's price list rendered by the
# host from the sandboxed policy's prices), the built-in protocol component loaded from its
# file (a fresh sandboxed instance per request, uncached), the same logic compiled natively,
# and constant bytes (the HTTP stack's ceiling). Reports requests per second, p50 and p99
# latency, peak memory, and the ratios.
#
#   bash bench/http.sh            # 64 connections, 20 s each (needs wrk: apt-get install wrk)
#   DURATION=5s CONNECTIONS=16 bash bench/http.sh
#   PROFILE=dev DURATION=1s CONNECTIONS=4 bash bench/http.sh    # a smoke run (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release --quiet -p reseller-host --features bench
  bin=target/release/reseller
else
  cargo build --quiet -p reseller-host --features bench
  bin=target/debug/reseller
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
bash bench/catalogue.sh 50 > "$work/catalogue.toml"
printf '\n[plugin]\ncache_dir = "%s/cache"\n' "$work" >> "$work/catalogue.toml"
sed 's/^listen = .*/&\nanswer_cache = 0/' "$work/catalogue.toml" > "$work/uncached.toml"
protocol_wasm=$PWD/target/guest/wasm32-wasip2/guest/reseller_plugin.wasm
sed "s|^\[plugin\]|&\npath = \"$protocol_wasm\"|" "$work/uncached.toml" > "$work/protocol.toml"
query='/billmgr?func=pricelist.export&itemtype=addition&onlyavailable=on&out=xml'

kib() { awk -v k="$1" '$1 == k":" { print $2 }' "/proc/$2/status"; }
ms() { awk '{ v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.3f", v }'; }

declare -A rps p50 p99 mem
servers="plugin uncached protocol native constant"
for handler in $servers; do
  config="$work/catalogue.toml"; mode=$handler
  if [ "$handler" = uncached ] || [ "$handler" = protocol ]; then config="$work/$handler.toml"; mode=plugin; fi
  RUST_LOG=warn,reseller_host::http=info "$bin" serve --config "$config" --handler "$mode" \
    2> "$work/$handler.log" &
  pid=$!
  for _ in $(seq 100); do grep -q 'listening on' "$work/$handler.log" && break; sleep 0.05; done
  addr=$(grep -o 'listening on http://[0-9.:]*' "$work/$handler.log" | sed 's|listening on http://||')
  url="http://$addr$query"
  curl -sf "$url" -o "$work/$handler.xml"
  idle=$(kib VmRSS $pid)
  wrk -t"$THREADS" -c"$CONNECTIONS" -d3s "$url" > /dev/null
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url" > "$work/$handler.wrk"
  peak=$(kib VmHWM $pid)
  kill $pid; wait $pid 2>/dev/null || true
  grep -q 'Non-2xx' "$work/$handler.wrk" && { echo "$handler: errors under load" >&2; cat "$work/$handler.wrk" >&2; exit 1; }
  rps[$handler]=$(awk '/Requests\/sec/ { print $2 }' "$work/$handler.wrk")
  p50[$handler]=$(awk '$1 == "50%" { print $2 }' "$work/$handler.wrk" | ms)
  p99[$handler]=$(awk '$1 == "99%" { print $2 }' "$work/$handler.wrk" | ms)
  mem[$handler]="$idle $peak"
done
for h in uncached protocol native constant; do
  cmp -s "$work/plugin.xml" "$work/$h.xml" || { echo "plugin and $h answers differ" >&2; exit 1; }
done

echo "HTTP, $CONNECTIONS connections, $DURATION, $(nproc) cores, 50-module price list ($(wc -c < "$work/plugin.xml") bytes)"
printf '%-9s %10s %9s %9s %10s %10s\n' server req/s p50_ms p99_ms idle_KiB peak_KiB
for h in $servers; do
  read -r idle peak <<< "${mem[$h]}"
  printf '%-9s %10s %9s %9s %10s %10s\n' "$h" "${rps[$h]}" "${p50[$h]}" "${p99[$h]}" "$idle" "$peak"
done
ratio() { # $1 $2: servers
  awk -v a="${rps[$1]}" -v b="${rps[$2]}" -v a9="${p99[$1]}" -v b9="${p99[$2]}" -v n1="$1" -v n2="$2" \
    'BEGIN { printf "%s/%s: throughput %.2fx (target >= 0.8), p99 %.2fx (target <= 1.5)\n", n1, n2, a/b, a9/b9 }'
}
ratio plugin native
ratio uncached native
ratio protocol native
ratio plugin constant
ratio uncached constant
read -r idle peak <<< "${mem[uncached]}"
awk -v i="$idle" -v p="$peak" -v c="$CONNECTIONS" \
    'BEGIN { printf "uncached plugin memory: %.0f KiB above idle at %d in flight = %.2f MiB per in-flight call (target <= 2)\n", p-i, c, (p-i)/c/1024 }'
