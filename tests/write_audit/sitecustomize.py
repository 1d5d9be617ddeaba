"""Imported at start-up by every Python process whose PYTHONPATH holds this folder (tests/test_distributed.py):
logs each file opened for writing under $WRITE_AUDIT_ROOT to $WRITE_AUDIT_LOG/<pid>.log, via an audit hook."""

import os
import sys

ROOT, LOG = os.environ.get("WRITE_AUDIT_ROOT"), os.environ.get("WRITE_AUDIT_LOG")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

if ROOT and LOG:
    os.makedirs(LOG, exist_ok=True)
    log = open(os.path.join(LOG, f"{os.getpid()}.log"), "a", buffering=1)  # opened before the hook: not logged

    def hook(event: str, args: tuple) -> None:
        if event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        path, mode, flags = os.fsdecode(args[0]), args[1], args[2]
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS)
        if writing and os.path.abspath(path).startswith(ROOT):
            log.write(os.path.abspath(path) + "\n")

    sys.addaudithook(hook)
