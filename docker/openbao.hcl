# OpenBao's configuration in docker-compose.yml: what `security-bootstrap run` writes for an OpenBao it
# supervises itself (secretstore_setup::server_config), with the paths of the openbao container. The
# compose test checks that the two stay the same. To use another port, change 8200/8201 here and in
# edgeseal.yaml (secret_store.address) and set EDGESEAL_OPENBAO_PORT for the example services.
storage "raft" {
  path = "/openbao/file"
  node_id = "edgeseal-node1"
  # a single node elects itself after 1 s instead of 5-10 s
  performance_multiplier = 1
}

listener "tcp" {
  address = "127.0.0.1:8200"
  cluster_address = "127.0.0.1:8201"
  tls_cert_file = "/etc/edgeseal/pki/openbao/cert.pem"
  tls_key_file = "/etc/edgeseal/pki/openbao/key.pem"
  tls_min_version = "tls12"
  disable_unauthed_generate_root_endpoints = true
}

api_addr = "https://127.0.0.1:8200"
cluster_addr = "https://127.0.0.1:8201"

audit "file" "file" {
  description = "edgeseal audit log"
  options {
    file_path = "/openbao/logs/audit.log"
  }
}
