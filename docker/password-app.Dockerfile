# edgeseal/password-app: an off-the-shelf-style app (it reads its password from APP_PASSWORD_FILE, the
# postgres `*_FILE` convention, and knows nothing of edgeseal) on top of edgeseal/security-bootstrap,
# whose binary is the entrypoint: `security-bootstrap gate --secret-file … -- /password-app` writes the
# file on a tmpfs and sends SIGHUP when the secret is rotated. Your own image only needs
# /usr/local/bin/security-bootstrap and the libraries it links next to the app.
ARG BASE=edgeseal/security-bootstrap:local
FROM ${BASE}
COPY rootfs/ /
ENTRYPOINT ["/password-app"]
CMD []
