"""The re-ranking stage: ANN candidates -> filter / exclude -> collapse -> page.

filter_lang parses filters (never eval); columns holds metadata as arrays behind one
interface (MetadataProvider.get(ids, cols), .mask(expr)); filtered chooses how to find
the top k among matching images; collapse and pages shape the ranked list.
"""
