"""The index: an on-disk directory (store), the ANN layer (ann) and the pipeline that
fills it (build). Data moves store <- build, and ann reads the store."""
