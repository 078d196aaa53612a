#!/usr/bin/env python3
"""zolder's message-building IMAP extensions driven by Python's imaplib: BINARY
(FETCH BINARY.PEEK / BINARY.SIZE, read back through imaplib's literal handling,
which also takes RFC 3516's ~{n}), MULTIAPPEND (two LITERAL+ messages in one APPEND
sent through _simple_command), CATENATE, and GENURLAUTH + URLFETCH.

Usage: imap_ext_imaplib.py HOST PORT USER PASSWORD; prints "extensions OK".
"""
import imaplib
import sys

# imaplib refuses commands it has no table entry for.
imaplib.Commands["GENURLAUTH"] = ("AUTH", "SELECTED")
imaplib.Commands["URLFETCH"] = ("AUTH", "SELECTED")

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
M = imaplib.IMAP4(host, port)
M.login(user, password)
typ, dat = M.capability()
caps = dat[0].decode().split()
for c in ("BINARY", "MULTIAPPEND", "CATENATE", "URLAUTH", "NOTIFY"):
    assert c in caps, (c, caps)

mime = (b"Subject: parts\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"caf=C3=A9\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"AAECAw==\r\n--b--\r\n")
typ, dat = M.append("INBOX", None, None, mime)
assert typ == "OK", dat
typ, dat = M.select("INBOX")
assert typ == "OK", dat

typ, dat = M.fetch("1", "(BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1])")
assert typ == "OK", dat
# [(b'1 (BINARY[2] ~{4}', b'\x00\x01\x02\x03'), (b' BINARY.SIZE[2] 4 BINARY[1] {5}', b'caf\xc3\xa9'), b')']
assert dat[0][1] == b"\x00\x01\x02\x03", dat
assert b"BINARY.SIZE[2] 4" in dat[1][0], dat
assert dat[1][1] == "café".encode(), dat

# MULTIAPPEND: one command, two messages, all or nothing.
one, two = b"Subject: one\r\n\r\n1\r\n", b"Subject: two\r\n\r\n2\r\n"
arg = b"(\\Seen) {%d+}\r\n%s {%d+}\r\n%s" % (len(one), one, len(two), two)
typ, dat = M._simple_command("APPEND", "INBOX", arg)
assert typ == "OK", dat
typ, dat = M.status("INBOX", "(MESSAGES)")
assert b"MESSAGES 3" in dat[0], dat

# CATENATE: the header of message 2 and new text.
text = b"\r\ncatenated\r\n"
typ, dat = M.status("INBOX", "(UIDVALIDITY)")
validity = dat[0].split(b"UIDVALIDITY ")[1].rstrip(b")").decode()
arg = (b"CATENATE (URL \"/INBOX;UIDVALIDITY=%s/;UID=2/;SECTION=HEADER\" TEXT {%d+}\r\n%s)"
       % (validity.encode(), len(text), text))
typ, dat = M._simple_command("APPEND", "INBOX", arg)
assert typ == "OK", dat
M.select("INBOX")
typ, dat = M.fetch("4", "(BODY.PEEK[])")
assert dat[0][1] == b"Subject: one\r\n\r\n\r\ncatenated\r\n", dat

# GENURLAUTH, then URLFETCH of the signed URL.
url = "imap://%s@%s/INBOX;UIDVALIDITY=%s/;UID=1/;SECTION=2;URLAUTH=user+%s" % (
    user, host, validity, user)
typ, dat = M._simple_command("GENURLAUTH", '"%s"' % url, "INTERNAL")
assert typ == "OK", dat
typ, dat = M._untagged_response(typ, dat, "GENURLAUTH")
signed = dat[0].decode().strip('"')
assert signed.startswith(url + ":internal:"), signed
typ, dat = M._simple_command("URLFETCH", '"%s"' % signed)
assert typ == "OK", dat
typ, dat = M._untagged_response(typ, dat, "URLFETCH")
# URLFETCH serves the section as stored (BODY[2]), not decoded.
assert dat[0][1] == b"AAECAw==", dat

M.logout()
print("extensions OK")
