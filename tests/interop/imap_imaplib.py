#!/usr/bin/env python3
"""Drives zolder's IMAP server with Python's imaplib (an independent client
implementation) through every command the server offers. Run by
tests/interop_imap.rs: imap_imaplib.py HOST PORT USER PASSWORD. Exit 0 = all good."""
import imaplib
import re
import sys
import time

# Extensions imaplib does not know by name.
for name in ("ID", "UNSELECT", "MOVE", "ENABLE"):
    imaplib.Commands.setdefault(name, ("NONAUTH", "AUTH", "SELECTED"))

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def ok(res, what):
    typ, data = res
    if typ != "OK":
        sys.exit(f"{what}: {typ} {data!r}")
    return data


def check(cond, what):
    if not cond:
        sys.exit(f"check failed: {what}")


M = imaplib.IMAP4(host, port)
check("IMAP4REV1" in M.capabilities, "IMAP4rev1 advertised")
ok(M.login(user, password), "LOGIN")
caps = ok(M.capability(), "CAPABILITY")[0].decode()
for c in ("IDLE", "UIDPLUS", "MOVE", "NAMESPACE", "ENABLE", "ESEARCH", "CONDSTORE"):
    check(c in caps, f"{c} in {caps}")
ns = ok(M.namespace(), "NAMESPACE")
check(b'(("" "."))' in ns[0], f"namespace {ns!r}")
ok(M._simple_command("ID", '("name" "imaplib")'), "ID")
ok(M._simple_command("NOOP"), "NOOP")

# Mailboxes
ok(M.create("Py"), "CREATE")
ok(M.create("Py.Sub"), "CREATE child")
boxes = ok(M.list('""', "*"), "LIST")
check(any(b'"Py.Sub"' in b for b in boxes), f"LIST shows Py.Sub: {boxes!r}")
check(any(b"\\HasChildren" in b and b'"Py"' in b for b in boxes), "Py has children")
ok(M.subscribe("Py"), "SUBSCRIBE")
subs = ok(M.lsub('""', "*"), "LSUB")
check(any(b'"Py"' in b for b in subs), "LSUB shows Py")
ok(M.unsubscribe("Py"), "UNSUBSCRIBE")
ok(M.rename("Py.Sub", "Py.Onder"), "RENAME")
ok(M.delete("Py.Onder"), "DELETE")

# Messages
msgs = []
for i in range(5):
    body = (
        f"From: Oma <oma@example.nl>\r\nTo: {user}@zolder.test\r\n"
        f"Subject: Bericht {i}\r\nDate: Mon, 4 Mar 2024 12:0{i}:00 +0100\r\n"
        f"Message-ID: <py{i}@example.nl>\r\n\r\nRegel een {i}\r\nRegel twee\r\n"
    ).encode()
    msgs.append(body)
    flags = "(\\Seen)" if i % 2 == 0 else None
    typ, data = M.append("Py", flags, imaplib.Time2Internaldate(time.time()), body)
    check(typ == "OK" and b"APPENDUID" in data[0], f"APPEND {data!r}")
st = ok(M.status("Py", "(MESSAGES UNSEEN UIDNEXT)"), "STATUS")[0].decode()
check("MESSAGES 5" in st and "UNSEEN 2" in st and "UIDNEXT 6" in st, st)

typ, data = M.select("Py")
check(typ == "OK" and data[0] == b"5", f"SELECT {data!r}")
data = ok(M.fetch("1:5", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"), "FETCH")
check(len([d for d in data if isinstance(d, bytes) and b"ENVELOPE" in d]) == 5, f"{data!r}")
check(b'"Bericht 0"' in data[0], "envelope subject")
data = ok(M.fetch("2", "(BODY.PEEK[])"), "FETCH body")
check(data[0][1] == msgs[1], "body bytes round-trip")
data = ok(M.fetch("2", "(BODY[HEADER.FIELDS (SUBJECT)] FLAGS)"), "FETCH header")
check(data[0][1] == b"Subject: Bericht 1\r\n\r\n", repr(data))
check(b"\\Seen" in data[1] or b"\\Seen" in data[0][0], f"implicit seen {data!r}")
data = ok(M.fetch("1", "(BODYSTRUCTURE)"), "BODYSTRUCTURE")
check(b'("TEXT" "PLAIN"' in data[0], repr(data))

found = ok(M.search(None, "UNSEEN"), "SEARCH")[0].split()
check(found == [b"4"], f"UNSEEN {found!r}")
found = ok(M.search("UTF-8", "SUBJECT", "Bericht", "SINCE", "1-Jan-2020"), "SEARCH")[0].split()
check(len(found) == 5, f"SUBJECT {found!r}")
found = ok(M.uid("SEARCH", "OR", "BODY", "\"een 3\"", "HEADER", "Message-ID", "py0"), "UID SEARCH")[0].split()
check(found == [b"1", b"4"], f"OR {found!r}")
found = ok(M.search(None, "NOT", "SEEN", "LARGER", "10"), "SEARCH")[0].split()
check(found == [b"4"], f"NOT SEEN {found!r}")

data = ok(M.store("1:2", "+FLAGS", "(\\Flagged $Werk)"), "STORE")
check(len(data) == 2 and b"\\Flagged" in data[0], repr(data))
ok(M.store("1", "-FLAGS.SILENT", "($Werk)"), "STORE silent")
typ, data = M.copy("1:2", "INBOX")
check(typ == "OK", f"COPY {data!r}")
check(re.search(rb"COPYUID \d+ 1:2 \d+,\d+", data[0] or b""), f"COPYUID {data!r}")
typ, data = M.uid("MOVE", "5", "INBOX")
check(typ == "OK", f"UID MOVE {data!r}")
# MOVE reported `* 5 EXPUNGE`; imaplib keeps it until the next expunge() call.
check(M.untagged_responses.pop("EXPUNGE", None) == [b"5"], "MOVE expunged seq 5")
ok(M.store("1", "+FLAGS", "(\\Deleted)"), "STORE deleted")
typ, data = M.expunge()
check(typ == "OK" and data == [b"1"], f"EXPUNGE {data!r}")
ok(M.uid("STORE", "2", "+FLAGS", "(\\Deleted)"), "UID STORE")
ok(M.uid("EXPUNGE", "2"), "UID EXPUNGE")
typ, data = M.select("Py", readonly=True)
check(data[0] == b"2", f"left {data!r}")
ok(M.check(), "CHECK")
ok(M._simple_command("UNSELECT"), "UNSELECT")
typ, data = M.select("INBOX")
check(data[0] == b"3", f"INBOX has the copies and the move: {data!r}")
ok(M.close(), "CLOSE")

# Extensions: SORT, THREAD, QUOTA, QRESYNC, UTF8=ACCEPT.
for c in ("QRESYNC", "SORT", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT", "QUOTA",
          "UTF8=ACCEPT", "COMPRESS=DEFLATE", "APPENDLIMIT="):
    check(c in caps, f"{c} in {caps}")
typ, data = M.select("INBOX")
validity = int(M.response("UIDVALIDITY")[1][0])
modseq = int(M.response("HIGHESTMODSEQ")[1][0])
# INBOX holds Bericht 0, 1 (copies, UIDs 1-2) and Bericht 4 (moved, UID 3).
found = ok(M.sort("(REVERSE DATE)", "UTF-8", "ALL"), "SORT")[0].split()
check(found == [b"3", b"2", b"1"], f"SORT {found!r}")
found = ok(M.uid("SORT", "(REVERSE SUBJECT)", "UTF-8", "NOT", "UID", "2"), "UID SORT")[0].split()
check(found == [b"3", b"1"], f"UID SORT {found!r}")
data = ok(M.thread("ORDEREDSUBJECT", "UTF-8", "ALL"), "THREAD")
check(data == [b"(1)(2)(3)"], f"THREAD {data!r}")
data = ok(M.uid("THREAD", "REFERENCES", "UTF-8", "SUBJECT", "Bericht"), "UID THREAD")
check(data == [b"(1)(2)(3)"], f"UID THREAD {data!r}")
typ, data = M.getquotaroot("INBOX")
check(typ == "OK" and b"INBOX" in data[0][0], f"GETQUOTAROOT {data!r}")
# Another change, then a QRESYNC select sees exactly it.
ok(M.store("1", "+FLAGS", "(\\Answered)"), "STORE")
ok(M.store("2", "+FLAGS", "(\\Deleted)"), "STORE")
ok(M.expunge(), "EXPUNGE")
ok(M.close(), "CLOSE")
ok(M.enable("QRESYNC"), "ENABLE QRESYNC")
ok(M._simple_command("SELECT", f"INBOX (QRESYNC ({validity} {modseq}))"), "SELECT QRESYNC")
vanished = M.untagged_responses.pop("VANISHED", None)
check(vanished == [b"(EARLIER) 2"], f"VANISHED {vanished!r}")
fetched = M.untagged_responses.pop("FETCH", None) or []
check(len(fetched) == 1 and b"UID 1 " in fetched[0] and b"\\Answered" in fetched[0],
      f"changed FETCH {fetched!r}")
# Issue 14: keywords announced, \Recent, SORT=DISPLAY, ESORT, SEARCHRES.
for c in ("SORT=DISPLAY", "ESORT", "SEARCHRES"):
    check(c in caps, f"{c} in {caps}")
M.untagged_responses.pop("FLAGS", None)
ok(M.store("1", "+FLAGS", "($Label1)"), "STORE keyword")
flags = M.untagged_responses.pop("FLAGS", None) or []
check(any(b"$Label1" in f for f in flags), f"FLAGS announces the keyword: {flags!r}")
found = ok(M.sort("(DISPLAYFROM)", "UTF-8", "ALL"), "SORT DISPLAYFROM")[0].split()
check(sorted(found) == [b"1", b"2"], f"SORT DISPLAYFROM {found!r}")
data = ok(M._simple_command("SORT", "RETURN (COUNT) (DATE) UTF-8 ALL"), "ESORT")
esearch = M.untagged_responses.pop("ESEARCH", None)
check(esearch and esearch[0].endswith(b"COUNT 2"), f"ESORT {esearch!r}")
ok(M._simple_command("UID", "SEARCH RETURN (SAVE) UID 1"), "SEARCH RETURN (SAVE)")
data = ok(M.fetch("$", "(UID)"), "FETCH $")
check(b"UID 1" in data[0], f"FETCH $ {data!r}")
ok(M.close(), "CLOSE")
ok(M.append("INBOX", None, None, b"From: a@b.c\r\nSubject: fresh\r\n\r\nnew\r\n"), "APPEND")
typ, data = M.select("INBOX")
recent = M.response("RECENT")[1]
check(recent == [b"1"], f"the new message is recent: {recent!r}")
data = ok(M.search(None, "NEW"), "SEARCH NEW")
check(len(data[0].split()) == 1, f"SEARCH NEW {data!r}")
ok(M.enable("UTF8=ACCEPT"), "ENABLE UTF8=ACCEPT")
ok(M.create('"Café"'), "CREATE UTF-8")
boxes = ok(M.list('""', '"Caf*"'), "LIST UTF-8")
check(any('"Café"'.encode() in b for b in boxes), f"UTF-8 LIST {boxes!r}")
typ, _ = M.logout()
check(typ == "BYE", "LOGOUT answers BYE")
print("imaplib: all commands OK")
