#!/usr/bin/env python3
"""A minimal host for `lavi serve --stdio` (protocol: models/PROTOCOL.md), using Debian's python3-msgpack.

    python3 examples/host.py IMAGE "QUESTION" [--model DIR] [--backend NAME] [--max-tokens N]

Starts `node dist/models/app/cli.js serve --stdio`, loads a model, asks a question about an image (sent as the
bytes of the PNG/JPEG file), prints the streamed tokens as they come, then the final answer, and shuts down.
"""
import argparse
import os
import struct
import subprocess
import sys

import msgpack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def send(proc, msg):
    body = msgpack.packb(msg, use_bin_type=True)
    proc.stdin.write(struct.pack(">I", len(body)) + body)
    proc.stdin.flush()


def read_exact(stream, n):
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            raise EOFError("server closed its stdout")
        buf += chunk
    return buf


def recv(proc):
    (n,) = struct.unpack(">I", read_exact(proc.stdout, 4))
    return msgpack.unpackb(read_exact(proc.stdout, n), raw=False)


def call(proc, msg, on_token=None):
    """Sends a request and returns its final reply, passing streamed token frames to on_token."""
    send(proc, msg)
    while True:
        reply = recv(proc)
        if reply.get("id") != msg["id"] and reply.get("type") != "error":
            continue
        if reply["type"] == "token":
            if on_token:
                on_token(reply)
            continue
        if reply["type"] == "error":
            raise RuntimeError("%s: %s" % (reply.get("code"), reply.get("message")))
        return reply


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("question")
    ap.add_argument("--model")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--node", default="node")
    a = ap.parse_args()

    proc = subprocess.Popen([a.node, os.path.join(ROOT, "dist", "models", "app", "cli.js"), "serve", "--stdio"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        load = {"id": 1, "type": "load", "backend": a.backend}
        if a.model:
            load["modelDir"] = a.model
        loaded = call(proc, load)
        print("loaded %s on %s (%d parameters)" % (loaded["modelDir"], loaded["backend"], loaded["parameters"]), flush=True)
        with open(a.image, "rb") as f:
            image = f.read()
        done = call(proc, {"id": 2, "type": "ask", "image": image, "question": a.question, "maxNewTokens": a.max_tokens},
                    on_token=lambda t: print("token %d %r" % (t["token"], t["text"]), flush=True))
        print("answer: %r (%s, %d tokens, %.1f tok/s)" % (done["answer"], done["stopReason"], len(done["tokens"]),
                                                        done["timings"]["tokensPerSecond"]), flush=True)
        print("shutdown: %s" % call(proc, {"id": 3, "type": "shutdown"})["type"], flush=True)
        proc.stdin.close()
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
