"""peer_celery: the Celery app of make bench's peers (workload 9): the
tasks of bench/peer_tasks.py on a Redis broker and result backend
(BENCH_REDIS_URL, e.g. redis://127.0.0.1:PORT/0), pickle serialization
(numpy arrays pass as they are). bench/peers.sh starts the worker with

  C_FORCE_ROOT=1 PYTHONPATH=bench /usr/bin/python3 -m celery -A peer_celery \\
      worker --concurrency 2 --pool prefork

Celery's defaults otherwise (a task is acknowledged when a worker takes
it), except with BENCH_CELERY_ACKS_LATE=1: task_acks_late and
task_reject_on_worker_lost, Celery's documented setting for tasks that
must survive a worker's death (the reliability check runs both).
"""
import os

from celery import Celery

import peer_tasks

url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6399/0")
app = Celery("peer_celery", broker=url, backend=url)
app.conf.update(task_serializer="pickle", result_serializer="pickle",
                accept_content=["pickle"], worker_prefetch_multiplier=4,
                broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False)
if os.environ.get("BENCH_CELERY_ACKS_LATE") == "1":
    app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True)

echo = app.task(name="echo")(peer_tasks.echo)
square_chunk = app.task(name="square_chunk")(peer_tasks.square_chunk)
exp_sinh_chunk = app.task(name="exp_sinh_chunk")(peer_tasks.exp_sinh_chunk)
mlp_classes = app.task(name="mlp_classes")(peer_tasks.mlp_classes)
record = app.task(name="record")(peer_tasks.record)
