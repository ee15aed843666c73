#!/usr/bin/env bash
# Build the local cluster stack from the Go module proxy into a cache outside the
# repository: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
# and the Flux controllers. Each binary is cached per component and version, so a
# warm machine finishes in seconds. Components are built one at a time.
#
# Usage: demo/kubestack/build.sh            build what is missing (exit 1 if any fails)
#        demo/kubestack/build.sh --paths    print "name path" for every component
# Env:   INFRATASK_CLUSTER_CACHE             cache root (default ~/.cache/pytest-infratask/cluster)
#        INFRATASK_CLUSTER_COMPONENTS        space-separated subset to build (default: every
#                                            component the tests need; helm-controller only
#                                            when named, as the module proxy refuses it)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
root="${INFRATASK_CLUSTER_CACHE:-$HOME/.cache/pytest-infratask/cluster}/$(go env GOVERSION)"

declare -A version=(
    [etcd]=$ETCD_VERSION
    [kube-apiserver]=$KUBERNETES_VERSION
    [kube-controller-manager]=$KUBERNETES_VERSION
    [kube-scheduler]=$KUBERNETES_VERSION
    [kwok]=$KWOK_VERSION
    [source-controller]=$SOURCE_CONTROLLER_VERSION
    [kustomize-controller]=$KUSTOMIZE_CONTROLLER_VERSION
    [helm-controller]=$HELM_CONTROLLER_VERSION
)
needed="etcd kube-apiserver kube-controller-manager kube-scheduler kwok source-controller kustomize-controller"
order="$needed helm-controller"
dir() { echo "$root/$1-${version[$1]}"; }

if [ "${1:-}" = "--paths" ]; then
    for name in $order; do echo "$name $(dir "$name")"; done
    exit 0
fi

failed=()
log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# run NAME FUNCTION ARGS...: build NAME into its cache directory unless it is there.
run() {
    local name="$1" out; shift
    out="$(dir "$name")"
    if [ -x "$out/$name" ]; then log "cached $name ${version[$name]}"; return 0; fi
    log "building $name ${version[$name]}"
    mkdir -p "$out"
    local start=$SECONDS
    if "$@" "$out" > "$out/build.log" 2>&1; then
        log "built $name in $((SECONDS - start))s"
        rm -f "$out/build.failed"
    else
        log "FAILED $name after $((SECONDS - start))s; last lines of $out/build.log:"
        tail -n 15 "$out/build.log" | sed 's/^/    /'
        touch "$out/build.failed"
        failed+=("$name")
    fi
}

moddir() {  # moddir MODULE@VERSION -> extracted (read-only) module directory
    go mod download -json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d.get("Dir") or sys.exit(d.get("Error", "no module directory")))'
}

work="$root/work"
mkdir -p "$work"

# --- Kubernetes: a wrapper module requiring k8s.io/kubernetes, each staging module
# replaced by its published v0.x release (list derived from the release's go.mod).
kube_wrapper() {
    local w="$work/kube-$KUBERNETES_VERSION" kmod staging
    [ -f "$w/.ready" ] && return 0
    rm -rf "$w"; mkdir -p "$w"
    kmod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')" || return 1
    staging="v0.${KUBERNETES_VERSION#v1.}"
    {
        echo "module infratask.local/kube"
        echo "go 1.26"
        echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
        sed -nE 's#^[[:space:]]*(k8s\.io/[a-z0-9-]+) => \./staging/.*#replace \1 => \1 '"$staging"'#p' "$kmod"
    } > "$w/go.mod"
    cat > "$w/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
    (cd "$w" && go mod tidy) && touch "$w/.ready"
}

kube_build() {  # kube_build COMPONENT OUT
    kube_wrapper || return 1
    local v="$KUBERNETES_VERSION" minor p ld="-s -w"
    minor="${v#v1.}"; minor="${minor%%.*}"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld="$ld -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ld="$ld -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    (cd "$work/kube-$KUBERNETES_VERSION" \
        && go build -trimpath -ldflags "$ld" -o "$2/$1" "k8s.io/kubernetes/cmd/$1")
}

# --- etcd: a wrapper main around go.etcd.io/etcd/server/v3/etcdmain.
etcd_build() {  # etcd_build OUT
    local w="$work/etcd-$ETCD_VERSION"
    rm -rf "$w"; mkdir -p "$w"
    printf 'module infratask.local/etcd\ngo 1.26\nrequire go.etcd.io/etcd/server/v3 %s\n' \
        "$ETCD_VERSION" > "$w/go.mod"
    cat > "$w/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    (cd "$w" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$1/etcd" .)
}

# --- kwok: built from its module download. Its stages (shipped in the module) are
# kept next to the binary: "fast" makes nodes Ready and pods Running at once, the node
# heartbeat keeps the node Ready for kube-controller-manager's node lifecycle.
kwok_stages() {  # kwok_stages OUT
    local src f
    src="$(moddir "sigs.k8s.io/kwok@$KWOK_VERSION")" || return 1
    : > "$1/stages.yaml.new"
    for f in "$src"/kustomize/stage/node/fast/*.yaml "$src"/kustomize/stage/node/heartbeat/*.yaml \
             "$src"/kustomize/stage/pod/fast/*.yaml; do
        [ "$(basename "$f")" = kustomization.yaml ] && continue
        { echo "---"; cat "$f"; } >> "$1/stages.yaml.new"
    done
    mv "$1/stages.yaml.new" "$1/stages.yaml"
}

kwok_build() {  # kwok_build OUT
    local w="$work/kwok-$KWOK_VERSION" src
    src="$(moddir "sigs.k8s.io/kwok@$KWOK_VERSION")" || return 1
    rm -rf "$w"; cp -r "$src" "$w"; chmod -R u+w "$w"
    (cd "$w" && go build -mod=mod -trimpath \
        -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
        -o "$1/kwok" ./cmd/kwok)
}

# --- Flux controllers: each from its module download, with the local ./api replace
# dropped so the published api module of the same release is used (plus the replaces
# versions.env names). The CRDs shipped in config/crd/bases are kept in OUT/crds.
flux_build() {  # flux_build NAME MODULE VERSION REPLACES OUT
    local name="$1" mod="$2" ver="$3" replaces="$4" out="$5" w="$work/$1-$3" src r
    src="$(moddir "$mod@$ver")" || return 1
    rm -rf "$w"; cp -r "$src" "$w"; chmod -R u+w "$w"
    mkdir -p "$out/crds"
    cp "$w"/config/crd/bases/*.yaml "$out/crds/" || return 1
    (cd "$w" && go mod edit -dropreplace "$mod/api") || return 1
    for r in $replaces; do (cd "$w" && go mod edit -replace "$r") || return 1; done
    (cd "$w" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$out/$name" .)
}

wanted="${INFRATASK_CLUSTER_COMPONENTS:-$needed}"
total=$SECONDS
log "cache $root"
for name in $wanted; do
    case "$name" in
        etcd) run etcd etcd_build ;;
        kube-*) run "$name" kube_build "$name" ;;
        kwok) run kwok kwok_build
              kwok_stages "$(dir kwok)" || { log "FAILED kwok stages"; failed+=(kwok-stages); } ;;
        source-controller) run "$name" flux_build "$name" github.com/fluxcd/source-controller \
            "$SOURCE_CONTROLLER_VERSION" "$SOURCE_CONTROLLER_REPLACES" ;;
        kustomize-controller) run "$name" flux_build "$name" github.com/fluxcd/kustomize-controller \
            "$KUSTOMIZE_CONTROLLER_VERSION" "$KUSTOMIZE_CONTROLLER_REPLACES" ;;
        helm-controller) run "$name" flux_build "$name" github.com/fluxcd/helm-controller \
            "$HELM_CONTROLLER_VERSION" "$HELM_CONTROLLER_REPLACES" ;;
        *) log "unknown component $name"; failed+=("$name") ;;
    esac
done
log "done in $((SECONDS - total))s; cache $(du -sh "$root" | cut -f1) in $root"
if [ ${#failed[@]} -gt 0 ]; then log "not built: ${failed[*]}"; exit 1; fi
