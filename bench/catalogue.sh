#!/usr/bin/env bash
# Writes a configuration with N modules (default 50) to stdout: half in EUR with a yearly
# cost, half in RUB without, names that need escaping. Used by the HTTP and start-up benchmarks.
set -euo pipefail
n=${1:-50}
cat <<TOML
[server]
listen = "127.0.0.1:0"

[catalogue]
region = "eu"
currency = "EUR"
TOML
for ((i = 0; i < n; i++)); do
  if ((i % 2 == 0)); then cost='cost = { month = "9.90", year = "99.00" }'; cur=EUR
  else cost='cost = { month = "913.9286" }'; cur=RUB; fi
  cat <<TOML

[[catalogue.modules]]
intname = "module-$i"
additionintname = "Kind$i"
name = "Module $i <&> «защита»"
tariff = { ru = $((50000 + i)), eu = $((60000 + i)) }
$cost
currency = "$cur"
TOML
done
cat <<'TOML'

[pricing]
markup_percent = "20"
rounding_step = "0.10"
periods = [1, 12]

[pricing.currency.RUB]
rounding_step = "10"
TOML
