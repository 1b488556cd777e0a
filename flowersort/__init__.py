"""flowersort: find the flower photos in a photo archive with a small numpy network."""

import os

# One BLAS thread per process, set before numpy loads (a user's own setting wins).
# flowersort's parallelism is its process pools, one process per core, and the network's
# matrix products are small: two training processes with two BLAS threads each ran 3x
# slower than with one each on 2 cores (measured).
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
