#!/usr/bin/env python3
"""SORT/THREAD and COMPRESS=DEFLATE timings for one IMAP server (run by
benches/imap-ext-bench.sh against zolder and Dovecot in the same run).

imap_ext_bench.py HOST PORT USER PASSWORD ROUNDS [plain] -> one JSON line:
  median milliseconds per command for SORT (DATE), SORT (SUBJECT), SORT (FROM),
  THREAD REFERENCES and THREAD ORDEREDSUBJECT over the whole INBOX, and the bytes
  on the wire for `FETCH 1:* (FLAGS BODY.PEEK[HEADER])` plain and under COMPRESS.
Each command runs once untimed first (index warm-up), then ROUNDS timed times.
With `plain`, COMPRESS is not tried (a server without it)."""
import json
import socket
import statistics
import sys
import time
import zlib

host, port, user, password, rounds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
use_compress = sys.argv[6:7] != ["plain"]


class Conn:
    def __init__(self):
        self.s = socket.create_connection((host, port))
        self.buf = b""
        self.wire_in = 0
        self.comp = None
        self.decomp = None
        self.n = 0
        self.read_until(b"\r\n")

    def recv(self):
        data = self.s.recv(1 << 16)
        if not data:
            raise SystemExit("connection closed")
        self.wire_in += len(data)
        self.buf += self.decomp.decompress(data) if self.decomp else data

    def read_until(self, end):
        while end not in self.buf:
            self.recv()
        i = self.buf.index(end) + len(end)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def take(self, n):
        while len(self.buf) < n:
            self.recv()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def cmd(self, text):
        self.n += 1
        tag = b"t%d " % self.n
        line = tag + text.encode() + b"\r\n"
        if self.comp:
            line = self.comp.compress(line) + self.comp.flush(zlib.Z_SYNC_FLUSH)
        self.s.sendall(line)
        while True:
            l = self.read_until(b"\r\n")
            while l.endswith(b"}\r\n") and b"{" in l:
                n = int(l[l.rindex(b"{") + 1:-3].rstrip(b"+"))
                l += self.take(n) + self.read_until(b"\r\n")
            if l.startswith(tag):
                if not l[len(tag):].startswith(b"OK"):
                    raise SystemExit(f"{text}: {l[:300]!r}")
                return l

    def compress(self):
        self.cmd("COMPRESS DEFLATE")
        self.comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.decomp = zlib.decompressobj(-15)


def timed(c, text):
    c.cmd(text)  # warm-up
    ms = []
    for _ in range(rounds):
        t = time.perf_counter()
        c.cmd(text)
        ms.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(ms), 2)


c = Conn()
c.cmd(f"LOGIN {user} {password}")
c.cmd("SELECT INBOX")
res = {}
for name, text in [
    ("sort_date", "SORT (DATE) UTF-8 ALL"),
    ("sort_subject", "SORT (SUBJECT) UTF-8 ALL"),
    ("sort_from", "SORT (FROM) UTF-8 ALL"),
    ("thread_references", "THREAD REFERENCES UTF-8 ALL"),
    ("thread_orderedsubject", "THREAD ORDEREDSUBJECT UTF-8 ALL"),
]:
    res[name + "_ms"] = timed(c, text)

# Bytes on the wire for a header sync, plain and compressed.
before = c.wire_in
c.cmd("FETCH 1:* (FLAGS BODY.PEEK[HEADER])")
res["headers_plain_bytes"] = c.wire_in - before
if not use_compress:
    print(json.dumps(res))
    sys.exit(0)
c.compress()
before = c.wire_in
c.cmd("FETCH 1:* (FLAGS BODY.PEEK[HEADER])")
res["headers_deflate_bytes"] = c.wire_in - before
t = time.perf_counter()
c.cmd("FETCH 1:* (FLAGS BODY.PEEK[HEADER])")
res["headers_deflate_ms"] = round((time.perf_counter() - t) * 1000, 1)
print(json.dumps(res))
