#!/usr/bin/env python3
"""Makes a SQLite database in WAL mode unreadable by other processes, the way root cannot
bypass: it holds exclusive POSIX locks on the WAL-index's lock bytes (offsets 120-127 of the
"-shm" file, where readers and writers take theirs), so every other connection's read fails after
SQLite's retries. Prints "locked", holds the lock until its stdin closes, then releases it."""
import fcntl
import os
import sys

shm = sys.argv[1] + "-shm"
fd = os.open(shm, os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 8, 120, os.SEEK_SET)
print("locked", flush=True)
sys.stdin.read()
fcntl.lockf(fd, fcntl.LOCK_UN, 8, 120, os.SEEK_SET)
