# edgeseal/example-service: the example service on top of edgeseal/security-bootstrap, whose binary is
# the service's entrypoint (`security-bootstrap gate … -- /example-service …`). A real service image
# does the same: it only needs /usr/local/bin/security-bootstrap and the libraries it links.
ARG BASE=edgeseal/security-bootstrap:local
FROM ${BASE}
COPY rootfs/ /
ENTRYPOINT ["/example-service"]
CMD []
