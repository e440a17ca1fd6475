"""peer_model: batchd's side of make bench's reliability check (workload 9):
a Python model (docs/coprocess.md) whose run() is bench/peer_tasks.py's
record(): sleep 20 ms, append the item to the log file, return it. Started
by bench/peers.sh as

  batchd --model record:python=bench/peer_model.py,interpreter=/usr/bin/python3,log=FILE
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_tasks  # noqa: E402


def load(params):
    return params["log"]


def run(log, item):
    return peer_tasks.record(int(item), log)
