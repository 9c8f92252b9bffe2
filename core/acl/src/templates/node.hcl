
node "{{.Name}}" {
	policy = "write"
}
service_prefix "" {
	policy = "read"
}
plugin_prefix "" {
	policy = "read"
}