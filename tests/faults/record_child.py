"""A ``candiag record`` process with its own traffic (python-can ``virtual`` is in-process).

Usage: ``python record_child.py RATE [candiag record arguments...]``.  A sender
thread transmits on the recorded channel a numbered sequence: frame ``i`` has
id ``0x18FF5000`` and the 8-byte big-endian payload ``i``, at about RATE frames
per second, from before the recorder opens (the first frames are lost on
purpose: the recorder is not listening yet) until the process ends.  Every
0.05 s it prints ``SENT <count> <wall time>`` so the test knows what had been
sent when it signalled the process.  Then ``candiag record`` runs as
``candiag.cli.main`` exactly as the console script would.
"""

from __future__ import annotations

import sys
import threading
import time

import can

from candiag.cli import main

RATE = float(sys.argv[1])
ARGS = sys.argv[2:]
CHANNEL = ARGS[ARGS.index("-c") + 1]


def send() -> None:
    bus = can.Bus(interface="virtual", channel=CHANNEL, ignore_config=True)
    sent = 0
    started = time.monotonic()
    last_report = 0.0
    while True:
        due = int((time.monotonic() - started) * RATE)
        while sent < due:
            bus.send(can.Message(arbitration_id=0x18FF5000, data=sent.to_bytes(8, "big")))
            sent += 1
        now = time.monotonic()
        if now - last_report >= 0.05:
            last_report = now
            print(f"SENT {sent} {time.time():.6f}", flush=True)
        time.sleep(0.005)


threading.Thread(target=send, name="test-sender", daemon=True).start()
time.sleep(0.2)  # traffic is flowing before the recorder starts
sys.exit(main(ARGS))
