# A second service, in HCL, with a TCP check and a TTL check the app keeps alive.
services = [
  {
    id   = "cache1"
    name = "cache"
    port = 18081
    tags = ["primary"]
    checks = [
      { tcp = "127.0.0.1:18081", interval = "5s", timeout = "1s" },
      { id = "cache1-heartbeat", name = "cache heartbeat", ttl = "30s", status = "passing" },
    ]
  }
]
