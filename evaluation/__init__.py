"""Offline evaluation: ANN fidelity against exact search, and task quality from labels.

It reads an index directory and searches through an injected backend (in-process
or the gRPC server), so it sits beside the server rather than inside the index.
"""
