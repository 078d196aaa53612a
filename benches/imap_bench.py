#!/usr/bin/env python3
"""IMAP load driver for benches/imap-bench.sh: N concurrent clients run the same
workload against one server and the script prints operations/s and p50/p99
latency per operation, as JSON on the last line.

usage: imap_bench.py HOST PORT USER PASSWORD CLIENTS ROUNDS
       imap_bench.py --idle HOST PORT USER PASSWORD CLIENTS SECONDS   (log in, SELECT,
           IDLE, hold for SECONDS; prints "idling" when all are idle)
       imap_bench.py --big HOST PORT USER PASSWORD                  (one client: SELECT,
           FETCH 1:* FLAGS, UID SEARCH UNSEEN / SINCE / FROM, FETCH headers of 100,
           EXPUNGE of 1000, each timed; JSON of milliseconds)
       imap_bench.py --big-warm HOST PORT USER PASSWORD             (the same once,
           without the EXPUNGE: warms caches)

The workload of one round: SELECT INBOX, FETCH flags of all, FETCH headers of all,
FETCH 20 whole bodies, APPEND one message, STORE flags on it, SEARCH, mark the
appended message deleted and UID EXPUNGE it (the mailbox keeps its size), IDLE
entered and left. stdlib only."""
import asyncio
import json
import re
import sys
import time

LIT = re.compile(rb"\{(\d+)\+?\}\r\n$")


class Client:
    def __init__(self, r, w):
        self.r, self.w, self.n = r, w, 0

    @classmethod
    async def connect(cls, host, port):
        r, w = await asyncio.open_connection(host, port, limit=1 << 24)
        c = cls(r, w)
        await c.r.readline()
        return c

    async def read_response(self, tag):
        lines = []
        while True:
            line = await self.r.readline()
            if not line:
                raise ConnectionError("closed")
            while True:
                m = LIT.search(line)
                if not m:
                    break
                data = await self.r.readexactly(int(m.group(1)))
                line += data + await self.r.readline()
            lines.append(line)
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(b"OK"):
                    raise RuntimeError(line)
                return lines

    async def cmd(self, text, literal=None):
        self.n += 1
        tag = b"b%d" % self.n
        if literal is None:
            self.w.write(tag + b" " + text.encode() + b"\r\n")
        else:
            self.w.write(tag + b" " + text.encode() + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        await self.w.drain()
        return await self.read_response(tag)

    async def idle_enter(self):
        self.n += 1
        self.idle_tag = b"b%d" % self.n
        self.w.write(self.idle_tag + b" IDLE\r\n")
        await self.w.drain()
        while not (await self.r.readline()).startswith(b"+"):
            pass

    async def idle_done(self):
        self.w.write(b"DONE\r\n")
        await self.w.drain()
        await self.read_response(self.idle_tag)


MSG = (
    b"From: Bench <bench@example.nl>\r\nTo: bench@zolder.test\r\n"
    b"Subject: bench append\r\nDate: Mon, 4 Mar 2024 12:00:00 +0100\r\n"
    b"Message-ID: <%d.%d@bench>\r\n\r\n" + b"Some body text for the benchmark.\r\n" * 40
)


async def timed(stats, name, coro):
    t = time.perf_counter()
    res = await coro
    stats.setdefault(name, []).append(time.perf_counter() - t)
    return res


async def worker(i, host, port, user, pw, rounds, stats):
    c = await Client.connect(host, port)
    await timed(stats, "login", c.cmd(f"LOGIN {user} {pw}"))
    for r in range(rounds):
        sel = await timed(stats, "select", c.cmd("SELECT INBOX"))
        exists = max(int(l.split()[1]) for l in sel if l.endswith(b" EXISTS\r\n"))
        await timed(stats, "fetch_flags", c.cmd("FETCH 1:* (UID FLAGS)"))
        await timed(stats, "fetch_headers", c.cmd(
            "FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])"))
        lo = max(1, (i * 20) % max(exists - 20, 1))
        await timed(stats, "fetch_bodies", c.cmd(f"FETCH {lo}:{lo + 19} BODY.PEEK[]"))
        res = await timed(stats, "append", c.cmd("APPEND INBOX (\\Seen)", MSG % (i, r)))
        uid = int(re.search(rb"APPENDUID \d+ (\d+)", res[-1]).group(1))
        await timed(stats, "store", c.cmd(f"UID STORE {uid} +FLAGS.SILENT (\\Flagged)"))
        await timed(stats, "search", c.cmd("UID SEARCH FLAGGED SUBJECT append"))
        await c.cmd(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
        await timed(stats, "expunge", c.cmd(f"UID EXPUNGE {uid}"))
        t = time.perf_counter()
        await c.idle_enter()
        await c.idle_done()
        stats.setdefault("idle", []).append(time.perf_counter() - t)
    await c.cmd("LOGOUT")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


async def load(host, port, user, pw, clients, rounds):
    stats = {}
    t = time.perf_counter()
    await asyncio.gather(*(worker(i, host, port, user, pw, rounds, stats) for i in range(clients)))
    wall = time.perf_counter() - t
    ops = sum(len(v) for v in stats.values())
    out = {"clients": clients, "ops": ops, "seconds": wall, "ops_per_s": ops / wall,
           "p50_ms": pct([x for v in stats.values() for x in v], 0.5) * 1000,
           "p99_ms": pct([x for v in stats.values() for x in v], 0.99) * 1000,
           "per_op": {k: {"p50_ms": pct(v, 0.5) * 1000, "p99_ms": pct(v, 0.99) * 1000}
                      for k, v in sorted(stats.items())}}
    print(json.dumps(out))


async def idle(host, port, user, pw, clients, seconds):
    cs = []
    for _ in range(clients):
        c = await Client.connect(host, port)
        await c.cmd(f"LOGIN {user} {pw}")
        await c.cmd("SELECT INBOX")
        await c.idle_enter()
        cs.append(c)
    print("idling", flush=True)
    await asyncio.sleep(seconds)
    for c in cs:
        await c.idle_done()
        await c.cmd("LOGOUT")


async def big(host, port, user, pw, warm=False, repeat=3):
    """One client on a big mailbox. Each read-only operation runs `repeat` times and
    its median counts; EXPUNGE of the first 1000 messages runs once (not when warming,
    so a warm-up leaves the mailbox as it was)."""
    c = await Client.connect(host, port)
    await c.cmd(f"LOGIN {user} {pw}")
    res = {}

    async def t(name, text):
        times, out = [], None
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = await c.cmd(text)
            times.append((time.perf_counter() - t0) * 1000)
        res[name] = sorted(times)[len(times) // 2]
        return out

    sel = await t("select_ms", "SELECT INBOX")
    res["exists"] = max(int(l.split()[1]) for l in sel if l.endswith(b" EXISTS\r\n"))
    await t("fetch_flags_ms", "FETCH 1:* (FLAGS)")
    await t("uid_search_unseen_ms", "UID SEARCH UNSEEN")
    await t("uid_search_since_ms", "UID SEARCH SINCE 1-Jan-2024")
    await t("uid_search_from_ms", "UID SEARCH FROM anna")
    await t("fetch_headers_100_ms",
            f"FETCH {max(1, res['exists'] - 99)}:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
    if not warm:
        await c.cmd("STORE 1:1000 +FLAGS.SILENT (\\Deleted)")
        t0 = time.perf_counter()
        await c.cmd("EXPUNGE")
        res["expunge_1000_ms"] = (time.perf_counter() - t0) * 1000
    await c.cmd("LOGOUT")
    print(json.dumps(res))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "--idle":
        asyncio.run(idle(a[1], int(a[2]), a[3], a[4], int(a[5]), float(a[6])))
    elif a[0] == "--big":
        asyncio.run(big(a[1], int(a[2]), a[3], a[4]))
    elif a[0] == "--big-warm":
        asyncio.run(big(a[1], int(a[2]), a[3], a[4], warm=True, repeat=1))
    else:
        asyncio.run(load(a[0], int(a[1]), a[2], a[3], int(a[4]), int(a[5])))
