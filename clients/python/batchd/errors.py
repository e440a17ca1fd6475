"""The exceptions of the batchd client.

Everything the client raises on purpose derives from BatchdError, so that
``except batchd.BatchdError`` catches them all:

- APIError: batchd answered with an RFC 9457 problem (any 4xx/5xx); it
  carries the status, title, detail and the whole problem body.
- ItemError: one item of a job got an error result (map, imap, starmap,
  imap_unordered raise it, like multiprocessing.Pool re-raises a task's
  exception); it names the item's index and the model's message.
- TransportError: batchd could not be reached, or a connection broke,
  after the retries (an OSError too, so code that catches network errors
  catches it).
- Timeout: Job.wait(timeout) ran out before the job finished (a
  TimeoutError too).
"""

__all__ = ["BatchdError", "APIError", "ItemError", "TransportError", "Timeout"]


class BatchdError(Exception):
    """The base of every exception this client raises on purpose."""


class APIError(BatchdError):
    """batchd refused a request with a problem+json body (or another error body).

    status: the HTTP status; title, detail: the problem's texts; type: its
    URN (urn:batchd:problem:...); problem: the whole body as a dict (with
    pointer, index, line, column or limit when batchd gave them);
    idempotency_key: the key of the submission it answered, if any.
    """

    def __init__(self, status, title, detail, type=None, problem=None, idempotency_key=None):
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.problem = problem or {}
        self.idempotency_key = idempotency_key
        where = []
        for k in ("pointer", "index", "line", "column"):
            if k in self.problem:
                where.append("%s %s" % (k, self.problem[k]))
        msg = "%s %s: %s" % (status, title, detail)
        if where:
            msg += " (" + ", ".join(where) + ")"
        super().__init__(msg)


class ItemError(BatchdError):
    """An item of a job failed: index is its position in the input, message the model's."""

    def __init__(self, index, message, job_id=None):
        self.index = index
        self.message = message
        self.job_id = job_id
        super().__init__("item %d failed: %s" % (index, message))


class TransportError(BatchdError, OSError):
    """batchd could not be reached, or the connection broke, after every retry.

    idempotency_key: for a submission, the key it was sent with; submitting
    again with the same key can never run the job twice.
    """

    def __init__(self, message, idempotency_key=None):
        self.idempotency_key = idempotency_key
        super().__init__(message)


class Timeout(BatchdError, TimeoutError):
    """Job.wait(timeout) returned before the job reached a final state; job is its last state."""

    def __init__(self, job_id, job):
        self.job_id = job_id
        self.job = job
        super().__init__("job %s is still %s" % (job_id, (job or {}).get("status", "unfinished")))
