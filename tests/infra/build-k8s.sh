#!/usr/bin/env bash
# Build the Kubernetes test control plane from the Go module proxy, cached by version.
#
#   tests/infra/build-k8s.sh [etcd|kube|kwok|all]
#
# Outputs (only built when missing):
#   $FLOWD_TESTBIN/etcd-$ETCD_VERSION/etcd
#   $FLOWD_TESTBIN/k8s-$K8S_VERSION/{kube-apiserver,kube-scheduler}
#   $FLOWD_TESTBIN/kwok-$KWOK_VERSION/kwok
# The throw-away wrapper modules live in $FLOWD_TESTBIN/src/ (never in the repo).
set -euo pipefail
K8S_VERSION=${K8S_VERSION:-v1.35.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.14}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
FLOWD_TESTBIN=${FLOWD_TESTBIN:-$HOME/.cache/flowd-testbin}
GO_P=${GO_P:-2}
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="-buildvcs=false -mod=mod"
mkdir -p "$FLOWD_TESTBIN/src"

log() { echo "[build-k8s $(date -u +%H:%M:%S)] $*"; }

build_kube() {
  local out="$FLOWD_TESTBIN/k8s-$K8S_VERSION"
  if [ -x "$out/kube-apiserver" ] && [ -x "$out/kube-scheduler" ]; then log "cached $out"; return 0; fi
  local staging="v0.${K8S_VERSION#v1.}" minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local w="$FLOWD_TESTBIN/src/k8s-$K8S_VERSION"
  rm -rf "$w"; mkdir -p "$w"
  log "k8s $K8S_VERSION: reading upstream go.mod"
  local up
  up=$(cd "$w" && GOFLAGS=-buildvcs=false go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
       | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  go mod edit -json "$up" > "$w/upstream.json"
  cd "$w"
  go mod init flowd.local/k8sbins >/dev/null 2>&1
  python3 - "$staging" > edits.txt <<'PY'
import json, sys
m = json.load(open("upstream.json")); staging = sys.argv[1]
print("-go=" + m["Go"])
for g in m.get("Godebug") or []:
    print("-godebug=%s=%s" % (g["Key"], g["Value"]))
for r in m.get("Require") or []:
    if r["Path"].startswith("k8s.io/") and r["Version"] == "v0.0.0":
        print("-replace=%s=%s@%s" % (r["Path"], r["Path"], staging))
PY
  xargs go mod edit < edits.txt
  log "k8s: $(grep -c '=>' go.mod) staging replaces"
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
  log "k8s: go get + tidy"
  go get "k8s.io/kubernetes@$K8S_VERSION"
  go mod tidy
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  mkdir -p "$out"
  local c
  for c in kube-apiserver kube-scheduler; do
    log "k8s: go build $c"
    go build -p "$GO_P" -trimpath -ldflags "$ld" -o "$out/.$c.tmp" "k8s.io/kubernetes/cmd/$c"
    mv "$out/.$c.tmp" "$out/$c"
  done
  "$out/kube-apiserver" --version
  log "k8s done"
}

build_etcd() {
  local out="$FLOWD_TESTBIN/etcd-$ETCD_VERSION"
  if [ -x "$out/etcd" ]; then log "cached $out/etcd"; return 0; fi
  local w="$FLOWD_TESTBIN/src/etcd-$ETCD_VERSION"
  rm -rf "$w"; mkdir -p "$w"; cd "$w"
  go mod init flowd.local/etcdbin >/dev/null 2>&1
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  log "etcd $ETCD_VERSION: go get + tidy"
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go mod tidy
  mkdir -p "$out"
  log "etcd: go build"
  go build -p "$GO_P" -trimpath -ldflags "-s -w" -o "$out/.etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$out/.etcd.tmp" "$out/etcd"
  "$out/etcd" --version
  log "etcd done"
}

build_kwok() {
  local out="$FLOWD_TESTBIN/kwok-$KWOK_VERSION"
  if [ -x "$out/kwok" ]; then log "cached $out/kwok"; return 0; fi
  mkdir -p "$out"
  log "kwok $KWOK_VERSION: go install"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && GOFLAGS=-buildvcs=false GOBIN="$tmp" go install -p "$GO_P" -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
  mv "$tmp/kwok" "$out/kwok"; rm -rf "$tmp"
  "$out/kwok" --version || true
  log "kwok done"
}

# kwok's standalone binary has no built-in stages: copy the upstream ones the harness uses
# from the kwok module (Go module cache) next to the binary, and the CRD of kwok's Logs
# resource (pod logs served by kwok; the harness installs it). Nothing goes into the repo.
kwok_stages() {
  local st="$FLOWD_TESTBIN/kwok-$KWOK_VERSION/stages"
  local crds="$FLOWD_TESTBIN/kwok-$KWOK_VERSION/crds"
  if [ -f "$st/node-initialize.yaml" ] && [ -f "$st/pod-ready.yaml" ] && [ -f "$st/pod-delete.yaml" ] \
     && [ -f "$crds/kwok.x-k8s.io_logs.yaml" ]; then
    return 0
  fi
  local dir tmp; tmp=$(mktemp -d)
  dir=$(cd "$tmp" && GOFLAGS=-buildvcs=false go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$tmp"
  mkdir -p "$st"
  cp "$dir/kustomize/stage/node/fast/node-initialize.yaml" \
     "$dir/kustomize/stage/pod/fast/pod-ready.yaml" \
     "$dir/kustomize/stage/pod/fast/pod-delete.yaml" "$st/"
  chmod u+w "$st"/*.yaml
  mkdir -p "$crds"
  cp "$dir/kustomize/crd/bases/kwok.x-k8s.io_logs.yaml" "$crds/"
  chmod u+w "$crds"/*.yaml
  log "kwok stages copied to $st, CRDs to $crds"
}

what=${1:-all}
case "$what" in
  kube) build_kube ;;
  etcd) build_etcd ;;
  kwok) build_kwok; kwok_stages ;;
  all) build_kube; build_etcd; build_kwok; kwok_stages ;;
  *) echo "usage: $0 [etcd|kube|kwok|all]" >&2; exit 2 ;;
esac
