# Sourced by scripts/test.sh: installs schemathesis (from PyPI, pinned, in a virtualenv
# under target/) for the spec-driven test of /openapi.json (tests/e2e/schemathesis.rs)
# and exports FERRY_SCHEMATHESIS, the path of its `st` command. Installs only when it is
# missing or at another version.
st_dir=target/schemathesis
st_venv=$st_dir/venv
st_version=4.32.5
mkdir -p "$st_dir"
python3 -c 'import ensurepip, venv' 2>/dev/null || {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
}
[ -x "$st_venv/bin/python" ] || python3 -m venv "$st_venv"
# (Read whole before matching: `grep -q` quitting early would fail the pipe under pipefail.)
st_installed=$("$st_venv/bin/pip" show schemathesis 2>/dev/null || true)
if ! grep -qx "Version: $st_version" <<<"$st_installed"; then
  st_started=$SECONDS
  printf '==> pip install schemathesis==%s\n' "$st_version" >&2
  "$st_venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$st_version" >"$st_dir/pip.log" 2>&1 \
    || { cat "$st_dir/pip.log" >&2; exit 1; }
  printf '==> schemathesis installed in %ss\n' "$((SECONDS - st_started))" >&2
fi
FERRY_SCHEMATHESIS="$(cd "$st_venv/bin" && pwd)/st"
export FERRY_SCHEMATHESIS
