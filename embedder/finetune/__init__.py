"""Fine-tuning the image tower on the user's own images (`visearch finetune`).

Contrastive learning in the open_clip image tower: two augmented views of an image are
positives (NT-Xent, self-supervised), or images of the same label are (supervised
contrastive). The modules each do one job: ``augment`` (views), ``split`` (leak-free
held-out labels), ``losses``, ``data`` (views of catalogued files), ``train`` (the loop,
resumable), ``checkpoint`` (training state and the open_clip-compatible output),
``measure`` (before/after metrics) and ``probe`` (the linear-probe baseline). The command
that ties them to the index directories is ``embedder.finetune.run``.
"""
