#!/usr/bin/env bash
# Regenerates docs/ui/*.png: a dev agent with a few services, checks (one WASM), keys and an
# event, photographed in headless Chromium by ui/e2e/screenshots.mjs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bin legate
(cd plugins && CARGO_TARGET_DIR="$PWD/target" cargo build --release --target wasm32-wasip2)
port=18555
data=$(mktemp -d)
target/debug/legate agent -dev -node demo-1 -http-port $port -dns-port -1 -serf-lan-port 18356 -serf-wan-port 18357 -server-port 18355 -log-level info \
    >"$data/agent.log" 2>&1 &
agent=$!
trap 'kill $agent 2>/dev/null; rm -rf "$data"' EXIT
api="http://127.0.0.1:$port"
until curl -sf "$api/v1/status/leader" | grep -q :; do kill -0 $agent || { cat "$data/agent.log"; exit 1; }; sleep 0.2; done
put() { curl -sf -X PUT "$api$1" --data-binary "$2" >/dev/null; }
put /v1/agent/service/register "{\"Name\":\"web\",\"ID\":\"web-1\",\"Port\":8080,\"Tags\":[\"v2\",\"frontend\"],\"Meta\":{\"team\":\"storefront\"},\"Check\":{\"CheckID\":\"web-1-http\",\"Name\":\"HTTP on 8080\",\"HTTP\":\"$api/v1/status/leader\",\"Interval\":\"5s\"}}"
put /v1/agent/service/register '{"Name":"web","ID":"web-2","Port":8081,"Tags":["v1","frontend"],"Check":{"CheckID":"web-2-ttl","Name":"heartbeat","TTL":"1h","Status":"critical","Notes":"the process stopped reporting"}}'
put /v1/agent/service/register '{"Name":"db","ID":"db-1","Port":5432,"Tags":["primary"],"Check":{"CheckID":"db-ttl","Name":"replication lag","TTL":"1h","Status":"warning"}}'
put /v1/agent/service/register '{"Name":"cache","ID":"cache-1","Port":6379}'
put /v1/agent/check/register "{\"ID\":\"api-json\",\"Name\":\"API answers JSON\",\"Interval\":\"5s\",\"Timeout\":\"3s\",\"Wasm\":{\"plugin\":\"$PWD/plugins/target/wasm32-wasip2/release/http_json.wasm\",\"args\":{\"url\":\"$api/v1/agent/self\",\"json_path\":\"Config.Datacenter\",\"json_equals\":\"dc1\"},\"allow_hosts\":[\"127.0.0.1\"]}}"
put /v1/kv/app/config.json '{"replicas": 3, "features": {"search": true, "beta": false}}'
put /v1/kv/app/maintenance 'false'
put /v1/kv/app/limits/rps '250'
put /v1/event/fire/deploy 'web v2.4.1'
for _ in $(seq 100); do curl -sf "$api/v1/agent/plugins" | grep -q "\"Runs\": *[1-9]" && break; sleep 0.2; done
mkdir -p docs/ui
(cd ui && LEGATE_URL="$api" SCREENSHOT_DIR="$PWD/../docs/ui" node e2e/screenshots.mjs)
