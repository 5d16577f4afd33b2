#!/usr/bin/env bash
# Validates ferry's deployment files without a cluster, a Docker engine or any
# network access beyond the package registries (PyPI, the Go module proxy):
#
#   1. Dockerfile/.dockerignore against the repo (paths, binary, toolchain, user)
#   2. helm lint, default and production values
#   3. helm template (default, production, and variants: jwks, ingress, explicit
#      secrets); every rendered document strictly decoded with client-go's scheme
#      (unknown fields, wrong types, unknown kinds are errors), ServiceMonitor
#      checked by hand, references inside the release checked (k8s-validate/)
#   4. the ferry.toml and FERRY_* variables the chart renders use keys that
#      src/config.rs knows (ferry refuses unknown keys at start)
#   5. templates that must refuse bad values do (public /api ingress path,
#      grace period shorter than the drain, several pods on the embedded backend)
#   6. docker-compose.yml against the Compose Specification JSON schema (from the
#      compose-go Go module), plus FERRY_* keys, pods and ports
#   7. deploy/grafana/ferry-dashboard.json: JSON, datasource variable, panels, metric
#      names against src/
#
# Tools are cached under ${FERRY_CACHE:-$HOME/.cache/ferry}: bin/helm (go install),
# venv-validate/ (check-jsonschema, PyYAML), bin/k8s-validate-<hash>, go/mod, go/build.
# Exits non-zero with `FAIL: ...` lines on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/ci"
CACHE="${FERRY_CACHE:-$HOME/.cache/ferry}"
BIN="$CACHE/bin"
VENV="$CACHE/venv-validate"
HELM_VERSION="${FERRY_HELM_VERSION:-v3.22.0}"
COMPOSE_GO_VERSION="${FERRY_COMPOSE_GO_VERSION:-v2.16.2}"
CHECK_JSONSCHEMA_VERSION="${FERRY_CHECK_JSONSCHEMA_VERSION:-0.39.0}"
# Capabilities helm renders against (a go-installed helm defaults to v1.20).
KUBE_VERSION="${FERRY_KUBE_VERSION:-1.33.0}"
CHART="$ROOT/helm/ferry"
# shellcheck source=../lib/python.sh
source "$ROOT/scripts/lib/python.sh"

export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOFLAGS="-buildvcs=false -modcacherw" GOTOOLCHAIN=local
NICE=(nice -n 10)

log() { printf '[validate-deploy] %s\n' "$*" >&2; }
failures=()
fail() { failures+=("$*"); printf 'FAIL: %s\n' "$*" >&2; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
# step NAME CMD...: runs CMD, records a failure (and goes on) when it fails.
step() {
  local name="$1"; shift
  local t0=$SECONDS
  if "$@"; then log "ok   $name ($((SECONDS - t0))s)"; else fail "$name"; fi
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- tools

setup_helm() {
  HELM="$BIN/helm"
  local stamp="$BIN/.helm.version" pkg="helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  if [[ -x "$HELM" ]] && { [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" == "$pkg" ]]; }; then return; fi
  command -v go >/dev/null || die "go is needed to install helm"
  log "installing helm: go install $pkg"
  mkdir -p "$BIN"
  GOBIN="$BIN" CGO_ENABLED=0 "${NICE[@]}" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" "$pkg" || die "helm install failed"
  echo "$pkg" >"$stamp"
}

setup_venv() {
  PY="$VENV/bin/python"
  local want="check-jsonschema==$CHECK_JSONSCHEMA_VERSION pyyaml"
  if [[ -x "$VENV/bin/check-jsonschema" && "$(cat "$VENV/.ferry-reqs" 2>/dev/null)" == "$want" ]]; then return; fi
  log "creating $VENV ($want)"
  make_venv "$VENV" "validate-deploy (check-jsonschema)"
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q --disable-pip-version-check $want || die "pip install $want failed"
  echo "$want" >"$VENV/.ferry-reqs"
}

setup_k8s_validate() {
  local hash
  hash="$(cat "$HERE"/k8s-validate/{go.mod,go.sum,*.go} | sha256sum | cut -c1-12)"
  K8S_VALIDATE="$BIN/k8s-validate-$hash"
  [[ -x "$K8S_VALIDATE" ]] && return
  command -v go >/dev/null || die "go is needed to build scripts/ci/k8s-validate"
  log "building k8s-validate (client-go scheme; first build takes a minute or two)"
  mkdir -p "$BIN"
  rm -f "$BIN"/k8s-validate-*
  (cd "$HERE/k8s-validate" && CGO_ENABLED=0 "${NICE[@]}" go build -trimpath -o "$K8S_VALIDATE.tmp" .) ||
    die "building k8s-validate failed"
  mv "$K8S_VALIDATE.tmp" "$K8S_VALIDATE"
}

setup_compose_schema() {
  local dir
  dir="$GOMODCACHE/github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION"
  if [[ ! -f "$dir/schema/compose-spec.json" ]]; then
    log "downloading github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION (for schema/compose-spec.json)"
    (cd "$WORK" && go mod download "github.com/compose-spec/compose-go/v2@$COMPOSE_GO_VERSION") ||
      die "go mod download of compose-go failed"
  fi
  COMPOSE_SCHEMA="$dir/schema/compose-spec.json"
  [[ -f "$COMPOSE_SCHEMA" ]] || die "compose-spec.json not found in $dir"
}

# ---------------------------------------------------------------- checks

render() { # <out> [helm args...]
  local out="$1"; shift
  "$HELM" template ferry "$CHART" --namespace ferry --kube-version "$KUBE_VERSION" "$@" >"$out"
}

check_chart() { # <name> <external objects> [helm args...]
  local name="$1" external="$2"; shift 2
  local out="$WORK/$name.yaml"
  render "$out" "$@" || return 1
  "$K8S_VALIDATE" -external "$external" "$out" || return 1
  "$PY" "$HERE/deploy_checks.py" config-keys "$out"
}

must_refuse() { # <what> <expected message part> [helm args...]
  local what="$1" want="$2"; shift 2
  local out
  if out="$(render /dev/null "$@" 2>&1)"; then
    echo "the chart rendered although $what" >&2; return 1
  fi
  grep -qF -- "$want" <<<"$out" || { echo "refused $what, but not with \"$want\": $out" >&2; return 1; }
}

notes_render() {
  # helm template does not render NOTES.txt (and parses what it renders as YAML):
  # in a copy of the chart, wrap NOTES.txt in a define and render it into a YAML
  # block, for the default and the production values.
  local copy="$WORK/notes/ferry" v
  rm -rf "$WORK/notes" && mkdir -p "$WORK/notes" && cp -r "$CHART" "$copy" || return 1
  { echo '{{- define "zz.notes" -}}'; cat "$CHART/templates/NOTES.txt"; echo '{{- end -}}'; } >"$copy/templates/_zz_notes.tpl"
  printf 'notes: |\n{{ include "zz.notes" . | indent 2 }}\n' >"$copy/templates/zz-notes.yaml"
  for v in "" "-f $CHART/values-production.yaml"; do
    # shellcheck disable=SC2086
    "$HELM" template ferry "$copy" --kube-version "$KUBE_VERSION" $v \
      --show-only templates/zz-notes.yaml >"$WORK/notes.out" || return 1
    grep -q "rollout status deploy/ferry" "$WORK/notes.out" || { cat "$WORK/notes.out" >&2; return 1; }
  done
}

lint() {
  "$HELM" lint --strict --kube-version "$KUBE_VERSION" "$CHART" "$@" >"$WORK/lint.out" 2>&1 ||
    { cat "$WORK/lint.out" >&2; return 1; }
}

values_documented() {
  # Every leaf of values.yaml has a comment (on its line or just above), and every
  # top-level value is named in the chart README.
  "$PY" - "$CHART/values.yaml" "$CHART/README.md" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
readme = open(sys.argv[2]).read()
bad = []
stack = []  # (indent, documented) of the enclosing keys
for i, l in enumerate(lines):
    m = re.match(r"^(\s*)([A-Za-z0-9_.\"-]+):", l)
    if not m:
        continue
    indent = len(m.group(1))
    while stack and stack[-1][0] >= indent:
        stack.pop()
    commented = "#" in l.split(":", 1)[1]
    j = i - 1
    while j >= 0 and lines[j].strip().startswith("#"):
        commented = True
        j -= 1
    documented = commented or any(d for _, d in stack)
    nxt = next((x for x in lines[i + 1:] if x.strip() and not x.strip().startswith("#")), "")
    is_map = l.rstrip().endswith(":") and (len(nxt) - len(nxt.lstrip())) > indent
    if not documented and not is_map:
        bad.append(f"values.yaml:{i+1}: `{m.group(2)}` has no comment (nor has any key above it)")
    stack.append((indent, commented))
    if indent == 0 and f"`{m.group(2)}" not in readme:
        bad.append(f"README.md does not document top-level value `{m.group(2)}`")
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

compose_schema() {
  "$PY" -c 'import json,sys,yaml; json.dump(yaml.safe_load(open(sys.argv[1])), open(sys.argv[2],"w"))' \
    "$ROOT/docker-compose.yml" "$WORK/compose.json" || return 1
  "$VENV/bin/check-jsonschema" --schemafile "$COMPOSE_SCHEMA" "$WORK/compose.json"
}

main() {
  local t0=$SECONDS
  setup_venv
  setup_helm
  setup_k8s_validate
  setup_compose_schema
  log "tools ready ($((SECONDS - t0))s): $("$HELM" version --short), $("$VENV/bin/check-jsonschema" --version)"

  step "Dockerfile and .dockerignore match the repo" "$PY" "$HERE/deploy_checks.py" dockerfile

  step "helm lint (default values)" lint
  step "helm lint (values-production.yaml)" lint -f "$CHART/values-production.yaml"
  step "values.yaml: every value commented and in README.md" values_documented
  step "NOTES.txt renders" notes_render

  step "render+validate: default values" check_chart default ""
  step "render+validate: values-production.yaml" check_chart production secret/ferry-secrets \
    -f "$CHART/values-production.yaml"
  step "render+validate: production with chart-made secrets and a Scylla password" check_chart prod-secrets "" \
    -f "$CHART/values-production.yaml" --set secrets.existingSecret= --set secrets.hs256Secret=s3cret \
    --set secrets.serviceToken=t0ken --set secrets.scyllaPassword=pw --set tracing.sampleRatio=1
  printf '{"keys":[]}' >"$WORK/jwks.json"
  step "render+validate: jwks auth, ingress, roles, no PDB" check_chart jwks "" \
    --set secrets.authMode=jwks --set-file secrets.jwks="$WORK/jwks.json" --set ingress.enabled=true \
    --set config.auth.issuer=https://id.example --set config.auth.audience=ferry \
    --set 'roles={gateway,pusher}' --set podDisruptionBudget.enabled=false --set preStopSleepSeconds=0
  step "chart refuses jwks without issuer and audience" must_refuse "authMode jwks, no audience" \
    "config.auth.issuer and config.auth.audience" --set secrets.authMode=jwks --set-file secrets.jwks="$WORK/jwks.json"

  step "chart refuses a public /api ingress path" must_refuse "an ingress path is /api/v1" "only /ws and /" \
    --set ingress.enabled=true --set 'ingress.hosts[0].host=x' --set 'ingress.hosts[0].paths[0].path=/api/v1' \
    --set 'ingress.hosts[0].paths[0].pathType=Prefix'
  step "chart refuses a grace period shorter than the drain" must_refuse "terminationGracePeriodSeconds=20" \
    "must exceed" --set terminationGracePeriodSeconds=20
  step "chart refuses several pods on the embedded backend" must_refuse "replicaCount=3 on embedded" \
    "for more than one replica" --set replicaCount=3
  step "config-key check catches an unknown key" must_fail_unknown_key

  step "docker-compose.yml against the Compose Specification schema ($COMPOSE_GO_VERSION)" compose_schema
  step "docker-compose.yml: FERRY_* keys, pods, ports, services" "$PY" "$HERE/deploy_checks.py" compose "$ROOT/docker-compose.yml"
  step "Grafana dashboard" "$PY" "$HERE/deploy_checks.py" dashboard "$ROOT/deploy/grafana/ferry-dashboard.json"

  if ((${#failures[@]})); then
    printf '\nvalidate-deploy: %d check(s) failed:\n' "${#failures[@]}" >&2
    printf '  - %s\n' "${failures[@]}" >&2
    exit 1
  fi
  log "all checks passed ($((SECONDS - t0))s)"
}

must_fail_unknown_key() {
  # The guard itself must work: a key src/config.rs does not know is an error.
  render "$WORK/bogus.yaml" --set config.session.no_such_key=1 || return 1
  if "$PY" "$HERE/deploy_checks.py" config-keys "$WORK/bogus.yaml" >"$WORK/bogus.out" 2>&1; then
    echo "config-keys accepted session.no_such_key" >&2; return 1
  fi
  grep -q "no_such_key" "$WORK/bogus.out"
}

main "$@"
