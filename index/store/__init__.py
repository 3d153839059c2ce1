"""The index directory on disk: catalog, raw vector shards, manifests, atomic writes."""
