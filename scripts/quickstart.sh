#!/usr/bin/env bash
# Ferry in one command: builds the binaries, starts the control plane on the embedded
# SQLite store, creates a service with 60-second certificates, enrolls three local
# agents (each with its own state and install directory) and shows certificates being
# delivered and renewed live. Runs for QUICKSTART_SECONDS (default 150), then stops
# everything it started. Everything lives under ./quickstart-data.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${QUICKSTART_SECONDS:-150}
root="$PWD/quickstart-data"

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [ ! -e /usr/include/postgresql/libpq-fe.h ] && [ "$(id -u)" = 0 ]; then
  say "installing libpq-dev (the control plane links libpq)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq libpq-dev >/dev/null
fi
say "building ferry-control-plane, ferryctl, ferry-agent"
cargo build --quiet --bins
bin="$PWD/target/debug"

rm -rf "$root" && mkdir -p "$root"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
server="https://127.0.0.1:$port"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

say "starting the control plane on $server (embedded SQLite in $root/control-plane)"
"$bin/ferry-control-plane" serve --data-dir "$root/control-plane" --listen "127.0.0.1:$port" \
  >"$root/control-plane.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [ -s "$root/control-plane/admin-token" ] && curl -skf "$server/readyz" >/dev/null && break
  sleep 0.2
done
# The control-plane CA's fingerprint, from the "listening on ... (CA fingerprint ...)"
# line (the log also names the root CA's, which signs workloads, not the server).
fingerprint=$(grep -o 'CA fingerprint sha256:[0-9a-f]*' "$root/control-plane.log" | head -1 | grep -o 'sha256:[0-9a-f]*')
echo "CA fingerprint: $fingerprint"
ctl() { "$bin/ferryctl" --server "$server" --token-file "$root/control-plane/admin-token" --ca-fingerprint "$fingerprint" "$@"; }

say "creating service 'demo' (60 s certificates, renewed 20 s before expiry)"
ctl service create demo --cert-ttl 60 --renew-before 20
token=$(ctl --json join-token create demo --max-uses 3 | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

for n in 1 2 3; do
  dir="$root/node-$n"
  mkdir -p "$dir"
  say "starting agent node-$n (state $dir/state, install $dir/install)"
  FERRY_JOIN_TOKEN="$token" "$bin/ferry-agent" run --server "$server" --service demo --node-id "node-$n" \
    --ca-fingerprint "$fingerprint" --state-dir "$dir/state" --install-dir "$dir/install" \
    --reload-command "echo reloaded node-$n >> $dir/reloads.log" >"$dir/agent.log" 2>&1 &
  pids+=($!)
done

show() {
  say "fleet at $(date +%T)"
  ctl node list demo
  for n in 1 2 3; do
    cert="$root/node-$n/install/current/cert.pem"
    if [ -e "$cert" ]; then
      printf 'node-%s installed %-28s %s, %s reloads\n' "$n" "$(readlink "$root/node-$n/install/current")" \
        "$(openssl x509 -in "$cert" -noout -enddate)" "$(wc -l <"$root/node-$n/reloads.log" 2>/dev/null || echo 0)"
    else
      echo "node-$n: nothing installed yet"
    fi
  done
}

end=$((SECONDS + seconds))
sleep 5
while [ $SECONDS -lt $end ]; do
  show
  sleep 15
done
say "forcing a refresh of node-1 and waiting for its ack"
ctl refresh demo node-1 --wait --timeout 30
show
say "done; logs and files are in $root"
