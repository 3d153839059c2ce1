"""The ANN layer: which faiss index to build, building it, and searching it per call."""
