#!/usr/bin/env bash
# Clients written elsewhere against the demo server: builds the demo
# (release) for one runtime, serves it on a free loopback port with small
# limits, runs the Python (`websockets`) and Node (`ws`) clients against it,
# stops it, and fails if either client failed.
#
# usage: [INTEROP_PROFILE=release|dev] interop/run.sh [tokio|smol]
# needs: python3 -m pip install -r interop/python/requirements.txt
#        npm ci --prefix interop/node
set -euo pipefail
cd "$(dirname "$0")/.."

runtime="${1:-tokio}"
case "$runtime" in
tokio) package=wirestream-tokio example=demo ;;
smol) package=wirestream-smol example=smol-demo ;;
*)
  echo "usage: interop/run.sh [tokio|smol]" >&2
  exit 2
  ;;
esac

# Small limits so that each case reaches its limit in well under a second.
max_frame_size=4096
body_timeout_ms=300
ping_ms=100
liveness_ms=400

python3 -c 'import websockets' 2>/dev/null || {
  echo "interop: websockets missing: python3 -m pip install -r interop/python/requirements.txt" >&2
  exit 1
}
[ -d interop/node/node_modules/ws ] || {
  echo "interop: ws missing: npm ci --prefix interop/node" >&2
  exit 1
}

# INTEROP_PROFILE=dev (CI) builds every example as `cargo test --workspace`
# already did (the same features, so nothing is rebuilt after it); the
# default is a release build of this runtime's demo.
case "${INTEROP_PROFILE:-release}" in
release)
  cargo build --release --locked -p "$package" --example "$example"
  bin="${CARGO_TARGET_DIR:-target}/release/examples/$example"
  ;;
dev)
  cargo build --workspace --examples --locked
  bin="${CARGO_TARGET_DIR:-target}/debug/examples/$example"
  ;;
*)
  echo "interop: INTEROP_PROFILE is release or dev" >&2
  exit 2
  ;;
esac

log="$(mktemp -d)/server.log"
# Port 0: the OS picks a free port, and the server prints the address.
"$bin" --serve 127.0.0.1:0 --max-frame-size "$max_frame_size" \
  --body-timeout-ms "$body_timeout_ms" --ping-ms "$ping_ms" --liveness-ms "$liveness_ms" \
  >"$log" 2>&1 &
server=$!
stop_server() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$server" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server" 2>/dev/null || true
  fi
  wait "$server" 2>/dev/null || true
}
trap stop_server EXIT

url=""
for _ in $(seq 100); do
  url="$(grep -o 'ws://[^ ]*/agent/completions' "$log" | head -n 1 || true)"
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "interop: the $runtime demo server did not start:" >&2
  cat "$log" >&2
  exit 1
fi
echo "== interop on $runtime: $url"

status=0
start=$SECONDS
echo "-- python (websockets $(python3 -c 'import websockets; print(websockets.__version__)'))"
python3 interop/python/client.py "$url" "$max_frame_size" "$body_timeout_ms" "$liveness_ms" || status=1
echo "-- node $(node --version) (ws $(node -p 'require("./interop/node/node_modules/ws/package.json").version'))"
node interop/node/client.mjs "$url" "$max_frame_size" "$body_timeout_ms" "$liveness_ms" || status=1

stop_server
trap - EXIT
# The server's side of case 3: the demo prints each answer it got.
answered=$(grep -c 'server request to session .*: answered 200' "$log" || true)
echo "-- server: $answered server request(s) answered 200"
if [ "$answered" -lt 2 ]; then
  echo "interop: expected the server to see both clients' answers; its log:" >&2
  cat "$log" >&2
  status=1
fi
echo "== interop on $runtime: $([ "$status" = 0 ] && echo passed || echo FAILED) in $((SECONDS - start)) s"
exit "$status"
