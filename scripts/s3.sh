# Sourced by scripts/test.sh: starts an S3-compatible server (moto's, from PyPI, in a
# virtualenv under target/) on a free loopback port, exports FERRY_TEST_S3_ENDPOINT and
# test credentials, and stops it when the calling script exits (after pg.sh's cleanup).
s3_dir=target/s3-test
s3_venv=$s3_dir/venv
moto_version=5.2.5
mkdir -p "$s3_dir"
python3 -c 'import ensurepip, venv' 2>/dev/null || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
}
[ -x "$s3_venv/bin/python" ] || python3 -m venv "$s3_venv"
# (Read whole before matching: `grep -q` quitting early would fail the pipe under pipefail.)
moto_installed=$("$s3_venv/bin/pip" show moto 2>/dev/null || true)
if ! grep -qx "Version: $moto_version" <<<"$moto_installed"; then
  printf '==> pip install moto[server]==%s (about a minute)\n' "$moto_version" >&2
  "$s3_venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version" >"$s3_dir/pip.log" 2>&1 \
    || { cat "$s3_dir/pip.log" >&2; exit 1; }
fi
s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$s3_venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$s3_dir/moto.log" 2>&1 &
s3_pid=$!
s3_cleanup() { kill "$s3_pid" 2>/dev/null || true; }
trap 'pg_cleanup; s3_cleanup' EXIT
for _ in $(seq 1 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$s3_port/')" 2>/dev/null && break
  sleep 0.1
done
printf '==> S3 (moto %s) on 127.0.0.1:%s\n' "$moto_version" "$s3_port" >&2
export FERRY_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
