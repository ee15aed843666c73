#!/usr/bin/env bash
# Build the service images with buildah and, with --push, push them to $REGISTRY_URL.
set -euo pipefail
: "${REGISTRY_URL:?set REGISTRY_URL}" "${VERSION:?set VERSION}"
push=false
[[ "${1:-}" == "--push" ]] && push=true
buildah=(buildah --storage-driver vfs)
[[ -n "${BUILDAH_ROOT:-}" ]] && buildah+=(--root "$BUILDAH_ROOT/storage" --runroot "$BUILDAH_ROOT/run")
policy=()
[[ -n "${SIGNATURE_POLICY:-}" ]] && policy=(--signature-policy "$SIGNATURE_POLICY")
for service in api; do
    image="$REGISTRY_URL/$service:$VERSION"
    echo "$service $VERSION" > "services/$service/version.txt"
    "${buildah[@]}" bud --quiet --isolation chroot "${policy[@]}" -t "$image" "services/$service"
    if $push; then
        "${buildah[@]}" push --quiet --tls-verify=false "${policy[@]}" "$image"
        echo "pushed $image"
    else
        echo "built $image"
    fi
done
