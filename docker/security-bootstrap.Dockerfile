# edgeseal/security-bootstrap: FROM scratch + the security-bootstrap binary, the KDF plug-in and the
# libraries they link (copied at their host paths by build-images.sh), plus the statically linked
# OpenBao binary `bao` taken from an OpenBao image: in docker-compose.yml the bootstrapper runs
# OpenBao itself (secret_store.supervise, static seal), so the seal key never leaves its memory and
# OpenBao's environment. No shell, no package manager. Built offline by ./build-images.sh, which
# prepares the context (rootfs/) and checks that the image's bao is static; see README.md.
#
# OPENBAO_IMAGE: a local image with a static /bin/bao, OpenBao >= 2.4 (seal "static" and the
# `initialize` block): edgeseal/openbao:TAG (build-images.sh builds it), or e.g. openbao/openbao:2.4.0
# once it is loaded into the daemon. Nothing is pulled: the legacy builder uses the local image.
ARG OPENBAO_IMAGE=edgeseal/openbao:local
FROM ${OPENBAO_IMAGE} AS openbao

FROM scratch
COPY rootfs/ /
COPY --from=openbao /bin/bao /usr/local/bin/bao
ENTRYPOINT ["/usr/local/bin/security-bootstrap"]
CMD ["--help"]
