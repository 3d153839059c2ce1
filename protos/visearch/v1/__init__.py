"""visearch.v1: search.proto and its generated Python modules."""
