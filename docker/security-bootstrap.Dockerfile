# edgeseal/security-bootstrap: FROM scratch + the security-bootstrap binary, the KDF plug-in and the
# libraries they link (copied at their host paths by build-images.sh). No shell, no package manager.
# Built offline by ./build-images.sh, which prepares the context (rootfs/); see README.md.
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/usr/local/bin/security-bootstrap"]
CMD ["--help"]
