#!/usr/bin/env bash
# Orders placed per second against the upstream simulator, on loopback: SQLite and PostgreSQL,
# one host and three hosts on one database. A round buys ORDERS orders through the hosts' Buy
# redirects, pays them all through the API (spread over the hosts, 8 at a time), and times
# from the first payment until every order is placed. Reports the median of ROUNDS rounds.
# A SQLite database has one server (the file's placer lock), so SQLite runs with one host only.
#
#   RESELLER_TEST_POSTGRES=postgres://user:pw@127.0.0.1/db bash bench/placement.sh
#   ORDERS=60 ROUNDS=1 PROFILE=dev bash bench/placement.sh      # a smoke run
#
# The PostgreSQL role must be allowed to create schemas in its database; each round works in
# a fresh schema `bench_placement`.
set -euo pipefail
cd "$(dirname "$0")/.."
ORDERS=${ORDERS:-300}
ROUNDS=${ROUNDS:-3}
PROFILE=${PROFILE:-release}
PG=${RESELLER_TEST_POSTGRES:?set RESELLER_TEST_POSTGRES to a postgres:// URL (see the README)}
for tool in curl jq psql; do
  command -v $tool >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done

if [ "$PROFILE" = release ]; then
  cargo build --release --quiet -p reseller-host -p upstream-sim
  dir=target/release
else
  cargo build --quiet -p reseller-host -p upstream-sim
  dir=target/debug
fi
reseller=$PWD/$dir/reseller
sim=$PWD/$dir/upstream-sim
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
token=bench-token-0123456789abcdef

# Waits for "listening on http://ADDR" in log $1; prints ADDR.
listening() {
  for _ in $(seq 400); do
    grep -q 'listening on http://' "$1" && break
    sleep 0.05
  done
  grep -o 'listening on http://[0-9.:]*' "$1" | head -n 1 | sed 's|listening on http://||'
}

# The simulator: a licence per order and money for all of them.
"$sim" --listen 127.0.0.1:0 2> "$work/sim.log" &
simurl=http://$(listening "$work/sim.log")
fresh_upstream() {
  curl -sf "$simurl/sim/state" |
    jq --argjson n "$ORDERS" '.account.password = "secret" | .account.balance = "100000000.0000"
      | .services = [] | .licences = ([range(0; $n)] | map({key: "7\(.)", value: "192.0.2.10"})
      | from_entries)' |
    curl -sf -X PUT -H 'content-type: application/json' --data-binary @- "$simurl/sim/state"
  curl -sf -X DELETE "$simurl/sim/calls" > /dev/null
}

config() { # $1: file, $2: database
  cat > "$1" <<EOF
[upstream]
url = "$simurl/billmgr"
user = "partner"
password = "secret"

[api]
token = "$token"

[catalogue]
region = "eu"
currency = "EUR"

[[catalogue.modules]]
intname = "drweb-lite"
additionintname = "DrWeb"
name = "Dr.Web for ispmanager 6 lite"
tariff = { ru = 55377, eu = 55361 }
cost = { month = "3.00", year = "30.00" }

[pricing]
markup_percent = "20"

[orders]
database = "$2"
poll_ms = 50
buys_per_address_per_minute = 0
buys_per_licence_per_minute = 0
EOF
}

# One round: prints seconds from the first payment until all ORDERS are placed.
round() { # $1: sqlite|postgres, $2: hosts
  local run=$work/run-$1-$2
  rm -rf "$run"; mkdir -p "$run"
  fresh_upstream
  local db=$run/orders.sqlite3
  if [ "$1" = postgres ]; then
    psql -q "$PG" -c 'DROP SCHEMA IF EXISTS bench_placement CASCADE' \
      -c 'CREATE SCHEMA bench_placement' 2> /dev/null
    case "$PG" in *\?*) db="$PG&options=-csearch_path%3Dbench_placement" ;;
      *) db="$PG?options=-csearch_path%3Dbench_placement" ;; esac
  fi
  config "$run/reseller.toml" "$db"
  local hosts=() pids=()
  for h in $(seq "$2"); do
    RUST_LOG=warn,reseller_host::http=info "$reseller" serve --listen 127.0.0.1:0 \
      --config "$run/reseller.toml" 2> "$run/host$h.log" &
    pids+=($!)
    local addr
    addr=$(listening "$run/host$h.log")
    [ -n "$addr" ] || { echo "host $h did not start:" >&2; cat "$run/host$h.log" >&2; return 1; }
    hosts+=("http://$addr")
  done
  # The Buys, through every host.
  seq 0 $((ORDERS - 1)) | xargs -P 8 -I{} sh -c '
    curl -s -o /dev/null -D - "$0/billmgr?module=drweb-lite&license=7{}&ip=192.0.2.10&module_id=55361" |
      tr -d "\r" | sed -n "s|^[Ll]ocation: order/||p"' "${hosts[0]}" > "$run/ids"
  [ "$(wc -l < "$run/ids")" -eq "$ORDERS" ] || { echo "not every Buy made an order" >&2; exit 1; }
  local start end placed=0
  start=$(date +%s.%N)
  awk -v n="${#hosts[@]}" -v list="${hosts[*]}" \
    'BEGIN { split(list, h, " ") } { print h[(NR - 1) % n + 1], $1 }' "$run/ids" |
    xargs -P 8 -L 1 sh -c 'curl -sf -o /dev/null -X POST -H "authorization: Bearer $0" \
      -H "content-type: application/json" -d "{}" "$1/api/v1/orders/$2/paid" ||
      echo "paying $2 through $1 failed" >&2' "$token"
  until [ "$placed" -ge "$ORDERS" ]; do
    sleep 0.02
    placed=$(curl -s -H "authorization: Bearer $token" \
      "${hosts[0]}/api/v1/orders?state=placed&limit=10000" | jq '.orders | length')
    if [ "$(echo "$(date +%s.%N) - $start > 300" | bc)" = 1 ]; then
      echo "$1 with $2 hosts: only $placed of $ORDERS placed after 300 s" >&2
      kill "${pids[@]}"; return 1
    fi
  done
  end=$(date +%s.%N)
  kill "${pids[@]}"; wait "${pids[@]}" 2> /dev/null || true
  local upstream
  upstream=$(curl -sf "$simurl/sim/state" | jq '.services | length')
  [ "$upstream" -eq "$ORDERS" ] || { echo "$upstream upstream orders for $ORDERS" >&2; exit 1; }
  echo "$end - $start" | bc
}

median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

[ -n "${ONLY:-}" ] && { round ${ONLY% *} ${ONLY#* }; exit; }
echo "placement, $ORDERS orders a round, median of $ROUNDS rounds, $PROFILE build, $(nproc) cores"
printf '%-9s %5s %10s %12s   %s\n' backend hosts median_s orders_per_s rounds_s
for backend in sqlite postgres; do
  for hosts in 1 3; do
    if [ $backend = sqlite ] && [ $hosts -gt 1 ]; then
      printf '%-9s %5s %10s %12s   %s\n' $backend $hosts - - 'one server per SQLite file'
      continue
    fi
    times=()
    for _ in $(seq "$ROUNDS"); do
      t=$(round $backend $hosts) || exit 1
      times+=("$t")
    done
    m=$(echo "${times[*]}" | median)
    printf '%-9s %5s %10.2f %12.1f   %s\n' $backend $hosts "$m" "$(echo "$ORDERS / $m" | bc -l)" \
      "$(printf '%.2f ' "${times[@]}")"
  done
done
