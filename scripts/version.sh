#!/bin/sh
# grpc-init's version, set here and only here: `swift build` stamps it into the binary (the
# BuildVersion plugin in Sources/ runs this script) and scripts/release.sh names the release's
# files, SBOM and image after it, so `grpc-init -version` and the release always agree.
#
#   RELEASE (below) tagged vRELEASE at HEAD   RELEASE                    e.g. 0.1.0
#   any other commit                          RELEASE-dev+REV            e.g. 0.1.0-dev+bb31c1b6ab12
#   uncommitted changes to what the binary    +dirty / .dirty appended   0.1.0+dirty, 0.1.0-dev+bb31c1b6ab12.dirty
#     is built from (Package.swift, Sources/, this script, the link-order lists)
#   no git (a source tarball)                 RELEASE-dev                0.1.0-dev
#
# REV is the commit's first 12 hex digits, a fixed length so that a commit's version does not
# change as the repository grows. SemVer orders RELEASE-dev before RELEASE: after tagging
# vRELEASE, set RELEASE to the next version (--check refuses a release until then).
#
# Usage: scripts/version.sh               the version
#        scripts/version.sh --oci-tag     the version as an image tag ('+' is not allowed in one: '_')
#        scripts/version.sh --swift FILE  FILE as Swift source (`let buildVersion = "..."`), rewritten only if it differs
#        scripts/version.sh --check       exit 1 with one line if a release of this tree would be misnamed
set -eu
RELEASE=0.1.0
cd "$(dirname "$0")/.."
BUILT_FROM="Package.swift Sources scripts/version.sh scripts/link-order.txt scripts/link-order-notls.txt"

in_git() {
    command -v git >/dev/null 2>&1 && [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$(pwd -P)" ]
}

version() {
    if ! in_git || ! rev=$(git rev-parse --short=12 --verify -q HEAD); then
        echo "$RELEASE-dev"
        return
    fi
    # Read-only: a build must not take the index lock from a git command the user is running.
    # shellcheck disable=SC2086
    changed=$(git --no-optional-locks status --porcelain -- $BUILT_FROM)
    if git tag --points-at HEAD | grep -qx "v$RELEASE"; then
        echo "$RELEASE${changed:+"+dirty"}"
    else
        echo "$RELEASE-dev+$rev${changed:+".dirty"}"
    fi
}

case "${1:-}" in
    "")
        version ;;
    --oci-tag)
        version | tr + _ ;;
    --swift)
        [ $# -eq 2 ] || { echo "usage: scripts/version.sh --swift FILE" >&2; exit 2; }
        text="// Written by scripts/version.sh at build time.
let buildVersion = \"$(version)\""
        [ -f "$2" ] && [ "$(cat "$2")" = "$text" ] || printf '%s\n' "$text" > "$2" ;;
    --check)
        in_git || exit 0
        for tag in $(git tag --points-at HEAD --list 'v[0-9]*'); do
            [ "$tag" = "v$RELEASE" ] || { echo "version.sh: HEAD is tagged $tag but scripts/version.sh sets $RELEASE" >&2; exit 1; }
        done
        if tagged=$(git rev-parse -q --verify "refs/tags/v$RELEASE^{commit}") && [ "$tagged" != "$(git rev-parse HEAD)" ]; then
            echo "version.sh: v$RELEASE is released (commit $(echo "$tagged" | cut -c1-12)): set the next version in scripts/version.sh" >&2
            exit 1
        fi ;;
    *)
        echo "usage: scripts/version.sh [--oci-tag | --swift FILE | --check]" >&2; exit 2 ;;
esac
