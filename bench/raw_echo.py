"""Baseline peer for `prcl bench wire --baseline`: bare pyzmq, no protocol, no validation.

Answers every message by echoing its frames back, zero-copy, until it gets a single frame b"stop".
"""
import sys

import zmq

ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.LINGER, 0)
sock.connect(sys.argv[1])
sock.send(b"ready")
while True:
    frames = sock.recv_multipart(copy=False)
    if len(frames) == 1 and frames[0].bytes == b"stop":
        break
    sock.send_multipart(frames, copy=False)
sock.close()
ctx.term()
