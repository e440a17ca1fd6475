"""batchd: a Python client for the batchd batch service, shaped like multiprocessing.Pool.

    import batchd
    client = batchd.Client("http://127.0.0.1:8080")
    client.map("square", range(10))            # [0, 1, 4, ..., 81]
    client.starmap("sum_squares", [(1, 2), (3, 4)])   # [5, 25]
    job = client.submit("exp_sinh", ({"n": n} for n in range(1000)))
    job.wait(timeout=60)
    for r in job.results(): ...

Standard library only (NumPy is used by upload() when it is given an array).
See batchd.client for the whole surface and batchd.errors for the exceptions.
"""

from .client import Client, Job, ref
from .errors import APIError, BatchdError, ItemError, Timeout, TransportError

__version__ = "0.1.0"
__all__ = ["Client", "Job", "ref", "APIError", "BatchdError", "ItemError", "Timeout",
           "TransportError"]
