"""gRPC search service, its client, and the `visearch` command."""
