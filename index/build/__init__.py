"""The build pipeline: list files -> plan -> decode and embed -> store -> publish an index."""
