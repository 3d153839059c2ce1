"""Embeddings in and out of an index directory as files other tools read and write.

Two layouts (layouts.py): our Parquet files with an embedding column, and
clip-retrieval's ``img_emb/img_emb_N.npy`` + ``metadata/metadata_N.parquet``.
``export.py`` writes either; ``reader.py`` reads either, batch by batch;
``importer.py`` stores what it reads and publishes an index over it.
"""
