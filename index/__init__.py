"""Index directory: raw vectors, catalog, versioned FAISS indexes, build and search."""
