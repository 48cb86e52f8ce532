"""SentinelOne connector: endpoint agents."""
