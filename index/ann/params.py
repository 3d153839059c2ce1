"""Choose the ANN index for a corpus: exact below a size, IVF with SQ8 or RaBitQ codes above.

The rule (documented in the README; measurements in docs/measurements.md):

* N < 10,000 vectors: exact flat inner product; well under a millisecond per query.
* nlist: the power of two nearest 4*sqrt(N), at most N/39 so every centroid
  gets >= 39 training points. Powers of two make the choice stable as a corpus
  grows, so an incremental build re-uses the trained index until N ~quadruples.
* A coarse quantizer over an HNSW graph (`IVF16384_HNSW32,SQ8`, by --index-spec) is
  trained by two-level spherical k-means and searched at efSearch 128 (index.ann.coarse).
  It is not the automatic choice: at 1M CLIP-shaped vectors 16*sqrt(N) such lists scan
  ~1.4x fewer codes than 4*sqrt(N) flat ones for the same recall, but after tuning both
  ran ~7.5x a flat scan batched (7.68x vs 7.45x), with a slower add and no GPU path
  (docs/measurements.md, section 4, "At 1M vectors").
* Codes: `SQ8`, one byte per dimension (512 bytes for ViT-B-32), below 4,096 lists;
  `RaBitQ2` (2-bit RaBitQ, 148 bytes at 512-d, with exact re-ranking) from 4,096 lists
  (N >= ~525k), where scanning the codes is the cost of a query. On CLIP-shaped vectors
  (a narrow cone around a shared mean) 64-byte PQ codes lose the true top 10 among
  look-alikes: IVF-PQ64x8 needed refine 32 at nprobe 64 for 0.95 10-recall@10 at 100k
  (3x a flat scan's batched speed), 4-bit fast-scan PQ stayed under 0.82 with refine 16,
  while IVF-SQ8 reaches 0.97 without re-ranking. RaBitQ's 2-bit codes with refine 2 rank
  almost as SQ8 does on the same lists (0.968 against 0.979 at 1M, 96 of 4096 lists), in
  a quarter of the bytes and at ~2x SQ8's batched speed at 1M; at 100k the two tie on
  CLIP-shaped vectors and SQ8 wins on clustered ones, where it needs no re-ranking
  (docs/measurements.md, section 4, "RaBitQ codes"); a faiss without RaBitQ (< 1.14)
  keeps SQ8. `--pq-m/--nbits` still build IVF-PQ.
* Training sample: 64 points per centroid, at least 10,000, at most 500,000
  (or 39 per centroid where that is more; 30 for an HNSW coarse quantizer).
* Default nprobe nlist/32 (at least 8) and exact re-ranking of 2*k candidates
  (refine 2) are only the starting point: every build then tunes nprobe and refine
  on sampled stored vectors to reach --target-recall (index.ann.tuning).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

from common.errors import VisearchError
from index.store.manifest import IndexSettings

FLAT_BELOW = 10_000
MIN_POINTS_PER_CENTROID = 39
TRAIN_POINTS_PER_CENTROID = 64
MIN_TRAIN = 10_000
MAX_TRAIN = 500_000
# An HNSW coarse quantizer (--index-spec IVFn_HNSWm,...) is trained two-level (index.ann.coarse),
# whose second level clusters each group apart: 30 points per list are enough there.
MIN_POINTS_PER_CENTROID_TWO_LEVEL = 30
DEFAULT_REFINE = 2
# From this many lists the automatic codes are RaBitQ's (above: where scanning dominates).
RABITQ_FROM_NLIST = 4096
RABITQ_CODES = "RaBitQ2"
# Factory strings of an exact (brute-force) index; all are built as a Flat in an IDMap2.
EXACT_SPECS = ("Flat", "IDMap,Flat", "IDMap2,Flat")


class IndexSpecError(VisearchError, ValueError):
    """Index parameters that faiss cannot build."""


@dataclass(frozen=True)
class IndexOverrides:
    """What the user asked for on the command line; None means choose automatically."""

    spec: str | None = None
    nlist: int | None = None
    pq_m: int | None = None
    nbits: int | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.spec, self.nlist, self.pq_m, self.nbits))


def auto_nlist(n: int) -> int:
    target = 4 * math.sqrt(n)
    nlist = 2 ** max(0, round(math.log2(target)))
    while nlist > 1 and n / nlist < MIN_POINTS_PER_CENTROID:
        nlist //= 2
    return nlist


def auto_pq_m(dim: int) -> int:
    limit = max(1, min(64, dim // 4))
    return max(m for m in range(1, limit + 1) if dim % m == 0)


def train_size(n: int, nlist: int, two_level: bool = False) -> int:
    """64 points per centroid, capped at MAX_TRAIN, but never below 39 per centroid (30
    for the two-level k-means of an HNSW coarse quantizer)."""
    capped = min(MAX_TRAIN, TRAIN_POINTS_PER_CENTROID * nlist)
    floor = MIN_POINTS_PER_CENTROID_TWO_LEVEL if two_level else MIN_POINTS_PER_CENTROID
    return min(n, max(MIN_TRAIN, floor * nlist, capped))


def auto_codes(nlist: int) -> str:
    """The automatic codes for an IVF index of ``nlist`` lists (see the module docstring)."""
    return RABITQ_CODES if nlist >= RABITQ_FROM_NLIST and rabitq_available() else "SQ8"


@functools.cache
def rabitq_available() -> bool:
    """Whether this faiss builds and copies IVF RaBitQ indexes (1.14 and later): the
    factory string needs 1.13.1, cloning one (sharded builds) 1.14."""
    import faiss

    try:
        index = faiss.index_factory(8, f"IVF1,{RABITQ_CODES}", faiss.METRIC_INNER_PRODUCT)
        faiss.clone_index(index)
    except (RuntimeError, AttributeError):
        return False
    return True


def estimating_codes(spec: str) -> bool:
    """Codes whose scores are estimates to be re-ranked (PQ, RaBitQ), not near-exact ones
    (SQ8, Flat): the tuner does not try them without re-ranking."""
    return bool(re.search(r"(?<!O)PQ\d|RaBitQ", spec))  # OPQ is a transform, not codes


def default_nprobe(nlist: int) -> int:
    return min(nlist, max(8, nlist // 32))


def choose_settings(n: int, dim: int, overrides: IndexOverrides = IndexOverrides()
                    ) -> IndexSettings:
    """Index settings for ``n`` vectors of ``dim`` dimensions.

    Raises:
        IndexSpecError: for overrides that faiss could not build (M not dividing dim, ...).
    """
    if overrides.spec:
        return _from_spec(overrides.spec, n)
    if not overrides.any and n < FLAT_BELOW:
        return IndexSettings(spec="Flat", exact=True, auto=True, refine_factor=1)
    nlist = overrides.nlist or auto_nlist(n)
    if overrides.pq_m is None and overrides.nbits is None:
        spec = f"IVF{nlist},{auto_codes(nlist)}"
        if n < max(nlist, 256):
            raise IndexSpecError(f"{n} vectors are too few to train {spec} (needs "
                                 f"at least {max(nlist, 256)}); use --index-spec Flat")
        return IndexSettings(
            spec=spec, exact=False, auto=not overrides.any, nlist=nlist,
            train_size=train_size(n, nlist), default_nprobe=default_nprobe(nlist),
            refine_factor=DEFAULT_REFINE)
    pq_m = overrides.pq_m or auto_pq_m(dim)
    nbits = overrides.nbits or 8
    if dim % pq_m:
        raise IndexSpecError(f"--pq-m {pq_m} must divide the embedding dimension {dim}")
    if not 1 <= nbits <= 16:
        raise IndexSpecError(f"--nbits must be between 1 and 16, not {nbits}")
    if n < max(nlist, 2 ** nbits):
        raise IndexSpecError(f"{n} vectors are too few to train IVF{nlist},PQ{pq_m}x{nbits} "
                         f"(needs at least {max(nlist, 2 ** nbits)}); use --index-spec Flat")
    return IndexSettings(
        spec=f"IVF{nlist},PQ{pq_m}x{nbits}", exact=False, auto=not overrides.any,
        nlist=nlist, pq_m=pq_m, nbits=nbits, train_size=train_size(n, nlist),
        default_nprobe=default_nprobe(nlist), refine_factor=DEFAULT_REFINE,
    )


def _from_spec(spec: str, n: int) -> IndexSettings:
    """Settings for a faiss factory string given verbatim."""
    ivf = re.search(r"IVF(\d+)", spec)
    pq = re.search(r"PQ(\d+)(?:x(\d+))?", spec)
    nlist = int(ivf.group(1)) if ivf else None
    exact = spec.strip() in EXACT_SPECS
    return IndexSettings(
        spec=spec, exact=exact, auto=False, nlist=nlist,
        pq_m=int(pq.group(1)) if pq else None,
        nbits=int(pq.group(2) or 8) if pq else None,
        train_size=0 if exact else train_size(n, nlist or 1, two_level="_HNSW" in spec),
        default_nprobe=default_nprobe(nlist) if nlist else None,
        refine_factor=DEFAULT_REFINE if pq or "SQ" in spec or "RaBitQ" in spec else 1,
    )
