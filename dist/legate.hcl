# Legate agent configuration (HCL, the syntax of Consul's config files).
# Every *.hcl, *.json and *.toml file in /etc/legate.d is read, in lexical order.
# The agent applies saved changes itself (auto_reload_config, on by default) and on
# `systemctl reload legate`; an invalid file leaves the running config in place, and
# `legate validate /etc/legate.d` says what is wrong. Some keys need a restart.

# datacenter: nodes of one datacenter share a LAN. Default "dc1".
#datacenter = "dc1"

# data_dir: where the agent keeps its state (Raft log, snapshots, keyring, node ID,
# compiled plugins). Required; must survive reboots.
data_dir = "/var/lib/legate"

# client_addr: where the HTTP API and DNS listen. Default 127.0.0.1 (loopback only);
# a space-separated list of IPs is allowed.
#client_addr = "0.0.0.0"

# ui_config: the web UI on the HTTP port.
#ui_config {
#  enabled = true
#}

# server: run as a server (Raft member) instead of a client. 3 or 5 per datacenter.
#server = true

# bootstrap_expect: servers to wait for before electing the first leader; the same
# on every server. Servers only.
#bootstrap_expect = 3

# bind_addr: the address cluster traffic (gossip, RPC) uses. Without it the agent
# takes the host's single private IPv4 address, and refuses to start if there are several.
#bind_addr = "0.0.0.0"

# encrypt: gossip encryption key, from `legate keygen`; the same on every agent.
# Kept in data_dir/serf/local.keyring after the first start.
#encrypt = "..."

# retry_join: agents (IPs or DNS names) to join, retried until one answers.
#retry_join = ["10.0.4.67", "legate.example.internal"]

# tls: certificates from `legate tls ca create` and `legate tls cert create -server`
# (named as Consul names them). The legate user must be able to read them: the key is
# written 0600, so e.g. chown root:legate and chmod 0640.
#tls {
#  defaults {
#    ca_file         = "/etc/legate.d/certs/consul-agent-ca.pem"
#    cert_file       = "/etc/legate.d/certs/dc1-server-consul-0.pem"
#    key_file        = "/etc/legate.d/certs/dc1-server-consul-0-key.pem"
#    verify_incoming = true
#    verify_outgoing = true
#  }
#  internal_rpc {
#    verify_server_hostname = true
#  }
#}

# acl: token-based access control. Once the servers run, create the initial
# management token with `legate acl bootstrap`.
#acl {
#  enabled                  = true
#  default_policy           = "deny"
#  enable_token_persistence = true
#}

# telemetry: Prometheus metrics at /v1/agent/metrics?format=prometheus.
#telemetry {
#  prometheus_retention_time = "60s"
#  disable_hostname          = true
#}

# plugin_dir: where WASM check plugins named without a path are found.
# Default data_dir/plugins.
#plugin_dir = "/var/lib/legate/plugins"
