#!/usr/bin/python3
"""Generates corpus/smuggling.json: hostile HTTP/1.1 requests for test_smuggling.py.

Written from the published request-smuggling research named in each family's `source`
(the cases are re-derived from the techniques those works describe; no code of theirs is
used). Each case is one request as raw bytes (stored as a latin-1 JSON string); the test
sends it followed by `GET /after` on the same connection. `expect` is this generator's
label of what tether's contract (/tmp/team/DECISIONS.md, RFC 9112) wants:

  reject   tether must refuse it (its own 4xx/5xx, Connection: close)
  accept   tether must forward it (refusing is tolerated and counted)
  either   the RFC leaves it open; forwarding must keep the framing

`status` is the refusal status the contract gives, where it gives one. The test checks
that the strict reference parser (rawupstream.py) agrees with every label.

Run: python3 tests/e2e/corpus/gen_smuggling.py   (rewrites smuggling.json beside it)
"""

import json
import os

HOST = b"a.test"
# A smuggled prefix: a backend that reads the body as the next request gets /hijacked and
# its X-Hijack value swallows the next request line (the classic "GPOST"/prefix gadget).
SMUG_PREFIX = b"GET /hijacked HTTP/1.1\r\nHost: a.test\r\nX-Hijack: "
# A complete smuggled request with a Content-Length that eats the start of the next one.
SMUG_FULL = b"GET /hijacked HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nx="
SMUG_PLAIN = b"GET /hijacked HTTP/1.1\r\nHost: a.test\r\n\r\n"

FAMILIES = []
CASES = []


def family(fid, source, description):
    FAMILIES.append({"id": fid, "source": source, "description": description})
    return fid


def case(fam, cid, request, expect, status=None, note=""):
    assert isinstance(request, bytes), cid
    assert expect in ("reject", "accept", "either"), cid
    if any(c["id"] == cid for c in CASES):
        raise SystemExit("duplicate case id %s" % cid)
    CASES.append({"id": cid, "family": fam, "expect": expect, "status": status,
                  "note": note, "request": request.decode("latin-1")})


def head(method, target, lines, version=b"HTTP/1.1", host=HOST):
    out = b"%s %s %s\r\n" % (method, target, version)
    if host is not None:
        out += b"Host: " + host + b"\r\n"
    for ln in lines:
        out += ln + b"\r\n"
    return out + b"\r\n"


def chunk(data, ext=b""):
    return b"%x%s\r\n%s\r\n" % (len(data), ext, data)


LAST = b"0\r\n\r\n"


def clte(te_lines):
    """Front end reads Content-Length, back end reads chunked: the body ends early for
    the chunked reader and SMUG_PREFIX becomes the start of the next request."""
    body = LAST + SMUG_PREFIX
    return head(b"POST", b"/clte", list(te_lines) + [b"Content-Length: %d" % len(body)]) + body


def tecl(te_lines):
    """Front end reads chunked, back end reads Content-Length: 4 (the chunk-size line):
    the chunk data (SMUG_FULL) becomes the next request."""
    body = chunk(SMUG_FULL) + LAST
    size_line = b"%x\r\n" % len(SMUG_FULL)
    return head(b"POST", b"/tecl", list(te_lines) + [b"Content-Length: %d" % len(size_line)]) + body


def te_only(te_lines, method=b"POST", target=b"/te"):
    """Only a (mutated) Transfer-Encoding: a back end that ignores it reads no body and
    the chunked body (with a smuggled request inside) becomes the next request."""
    body = chunk(SMUG_PLAIN) + LAST
    return head(method, target, list(te_lines)) + body


# ---------------------------------------------------------------------------------------
F = family(
    "te-permutations-portswigger",
    "PortSwigger HTTP Request Smuggler, src/burp/DesyncBox.java (the permutation list of "
    "James Kettle's 'HTTP Desync Attacks: Request Smuggling Reborn', 2019, and later "
    "versions): vanilla, underjoin1, spacejoin1, space1, nameprefix1/2, valueprefix1, "
    "nospace1, linewrapped1, gareth1, badsetupCR/LF, vertwrap, tabwrap, multiCase, "
    "UPPERCASE, 0dwrap, 0dspam, connection, spjunk, backslash (Amit Klein, 'HTTP Request "
    "Smuggling in 2020'), spaceFF, unispace, commaCow, cowComma, contentEnc, quoted, "
    "aposed, dualchunk, lazygrep, 0dsuffix, tabsuffix, revdualchunk, nested, encode, "
    "accentTE, accentCH, bodysplit, badwrap, h2space/h2colon, spacefix1/prefix1/suffix1 "
    "over NUL, TAB, VT, FF, CR, DEL",
    "Transfer-Encoding obfuscations, each in a CL.TE and a TE.CL shaped request")

TE = b"Transfer-Encoding: chunked"
PERMS = [
    # name, TE header lines, expect when combined with Content-Length
    ("vanilla", [TE], "reject"),
    ("underjoin1", [b"Transfer_Encoding: chunked"], "accept"),   # dropped: CL frames
    ("spacejoin1", [b"Transfer Encoding: chunked"], "reject"),
    ("space1", [b"Transfer-Encoding : chunked"], "reject"),
    ("nameprefix1", [b"Foo: bar", b" Transfer-Encoding: chunked"], "reject"),
    ("nameprefix2", [b"Foo: bar", b"\tTransfer-Encoding: chunked"], "reject"),
    ("valueprefix1", [b"Transfer-Encoding:  chunked"], "reject"),
    ("nospace1", [b"Transfer-Encoding:chunked"], "reject"),
    ("linewrapped1", [b"Transfer-Encoding:\n chunked"], "reject"),
    ("gareth1", [b"Transfer-Encoding\n : chunked"], "reject"),
    ("badsetupCR", [b"Foo: bar\rTransfer-Encoding: chunked"], "reject"),
    ("badsetupLF", [b"Foo: bar\nTransfer-Encoding: chunked"], "reject"),
    ("vertwrap", [b"Transfer-Encoding: \n\x0bchunked"], "reject"),
    ("tabwrap", [b"Transfer-Encoding: \r\n\tchunked"], "reject"),
    ("multiCase", [b"tRANSFER-ENCODING: chunked"], "reject"),
    ("UPPERCASE", [b"TRANSFER-ENCODING: CHUNKED"], "reject"),
    ("0dwrap", [b"Foo: bar\r\n\rTransfer-Encoding: chunked"], "reject"),
    ("0dspam", [b"Tra\rnsfer-Encoding: chunked"], "reject"),
    ("connection", [b"Connection: Transfer-Encoding", TE], "reject"),
    ("spjunk", [b"Transfer-Encoding x: chunked"], "reject"),
    ("backslash", [b"Transfer\\Encoding: chunked"], "reject"),
    ("spaceFF", [b"Transfer-Encoding:\xffchunked"], "reject"),
    ("unispace", [b"Transfer-Encoding:\xa0chunked"], "reject"),
    ("commaCow", [b"Transfer-Encoding: chunked, identity"], "reject"),
    ("cowComma", [b"Transfer-Encoding: identity, chunked"], "reject"),
    ("contentEnc", [b"Content-Encoding: chunked"], "accept"),    # not framing: CL frames
    ("quoted", [b'Transfer-Encoding: "chunked"'], "reject"),
    ("aposed", [b"Transfer-Encoding: 'chunked'"], "reject"),
    ("dualchunk", [TE, b"Transfer-encoding: identity"], "reject"),
    ("lazygrep", [b"Transfer-Encoding: chunk"], "reject"),
    ("0dsuffix", [b"Transfer-Encoding: chunked\r"], "reject"),
    ("tabsuffix", [b"Transfer-Encoding: chunked\t"], "reject"),
    ("revdualchunk", [b"Transfer-Encoding: identity", TE], "reject"),
    ("nested", [b"Transfer-Encoding: identity, chunked, identity"], "reject"),
    ("encode", [b"Transfer-%45ncoding: chunked"], "accept"),   # another field: CL frames
    ("accentTE", [b"Transf\x82r-Encoding: chunked"], "reject"),
    ("accentCH", [b"Transfer-Encoding: ch\x96nked"], "reject"),
    ("bodysplit", [b"X: y", b"Foo: barn\n\nTransfer-Encoding: chunked"], "reject"),
    ("badwrap", [b"X-Blah-Ignore: ", b" Transfer-Encoding: chunked"], "reject"),
    ("h2space", [b"Transfer-Encoding chunked : chunked"], "reject"),
    ("h2colon", [b"Transfer-Encoding`chunked : chunked"], "reject"),
]
# Names whose value stays exactly "chunked" after OWS trimming are TE + CL: reject. A few
# of the above are reject only because of the CL beside them (valueprefix1, nospace1,
# tabsuffix, multiCase, UPPERCASE); alone they are valid TE (see te_only below).
for name, lines, expect in PERMS:
    case(F, "pw-%s-clte" % name, clte(lines), expect, 400 if expect == "reject" else None)
    case(F, "pw-%s-tecl" % name, tecl(lines), expect, 400 if expect == "reject" else None)
for i in (0x00, 0x09, 0x0B, 0x0C, 0x0D, 0x7F):
    case(F, "pw-spacefix1-%02x" % i, clte([b"Transfer-Encoding:%cchunked" % i]),
         "reject", 400)
    case(F, "pw-prefix1-%02x" % i, clte([b"Transfer-Encoding: %cchunked" % i]),
         "reject", 400)
    if i not in (0x09, 0x0D):      # those two are 0dsuffix and tabsuffix above
        case(F, "pw-suffix1-%02x" % i, tecl([b"Transfer-Encoding: chunked%c" % i]),
             "reject", 400)

# ---------------------------------------------------------------------------------------
F = family(
    "te-bytes-defparam",
    "defparam/smuggler (Evan Custodio), configs/default.py, exhaustive.py and doubles.py: "
    "the midspace/postspace/prespace/endspace byte sweeps, xprespace/endspacex/"
    "rxprespace/xnprespace/endspacerx/endspacexn, smashed, sarcasm, yelling, x-rout, "
    "x-nout; probed with its TE.CL shape (Content-Length 6/5 over '0\\r\\n\\r\\nX')",
    "one control or high byte placed around Transfer-Encoding, with a Content-Length")

def defparam_tecl(te_line, cl=6):
    body = LAST + b"X"
    return head(b"POST", b"/dp", [te_line, b"Content-Length: %d" % cl]) + body[:cl]


for i in (0x01, 0x08, 0x0A, 0x0B, 0x0C, 0x1F, 0x20, 0x7F, 0xA0, 0xFF):
    case(F, "dp-midspace-%02x" % i, defparam_tecl(b"Transfer-Encoding:%cchunked" % i), "reject", 400)
    case(F, "dp-postspace-%02x" % i, defparam_tecl(b"Transfer-Encoding%c: chunked" % i), "reject", 400)
    # 0x0A makes "Host: a.test\r\n\nTransfer-Encoding...": an LF-only empty line, which
    # RFC 9112 §2.2 lets a recipient read as the end of the head (then the rest is garbage).
    pre = "either" if i == 0x0A else "reject"
    case(F, "dp-prespace-%02x" % i, defparam_tecl(b"%cTransfer-Encoding: chunked" % i), pre,
         400 if pre == "reject" else None)
    case(F, "dp-endspace-%02x" % i, defparam_tecl(b"Transfer-Encoding: chunked%c" % i), "reject", 400)
for i in (0x09, 0x0D, 0x20):
    # "X: X<SP>Transfer-Encoding: chunked" is one valid field X: Content-Length frames.
    xp = "reject" if i == 0x0D else "accept"
    case(F, "dp-xprespace-%02x" % i, defparam_tecl(b"X: X%cTransfer-Encoding: chunked" % i), xp,
         400 if xp == "reject" else None)
    case(F, "dp-rxprespace-%02x" % i, defparam_tecl(b"X: X\r%cTransfer-Encoding: chunked" % i), "reject", 400)
    case(F, "dp-xnprespace-%02x" % i, defparam_tecl(b"X: X%c\nTransfer-Encoding: chunked" % i), "reject", 400)
    case(F, "dp-endspacerx-%02x" % i, defparam_tecl(b"Transfer-Encoding: chunked\r%cX: X" % i), "reject", 400)
case(F, "dp-smashed", defparam_tecl(b"Transfer Encoding:chunked"), "reject", 400)
case(F, "dp-sarcasm", defparam_tecl(b"TrAnSFer-EnCODinG: cHuNkeD"), "reject", 400)
case(F, "dp-x-rout", defparam_tecl(b"X:X\rTransfer-Encoding: chunked"), "reject", 400)
case(F, "dp-x-nout", defparam_tecl(b"X:X\nTransfer-Encoding: chunked"), "reject", 400)
case(F, "dp-doubles-09-09", defparam_tecl(b"\tTransfer-Encoding\t: chunked"), "reject", 400)
case(F, "dp-doubles-xx-20-20", defparam_tecl(b"Transfer-Encoding :  chunked"), "reject", 400)

# ---------------------------------------------------------------------------------------
F = family(
    "te-values",
    "HTTP Garden (narfindustries/http-garden, TROPHIES.md: server bugs 11, 12, 21, 37, "
    "44, 46 and transducer bugs 9, 15, 18, 23, 25), llhttp test/request/"
    "transfer-encoding.md ('chunked' not last, duplicate TE, 'chunkedchunked', "
    "'pigeons', empty TE), Http11Probe smuggling docs (te-leading-comma, "
    "te-trailing-comma, te-double-chunked, te-duplicate-headers, te-identity, "
    "te-not-final-chunked, te-xchunked, te-http10, te-empty-value, te-null), HAProxy "
    "reg-test 'Transfer-Encoding header conformance'; tether issue 12 item 4",
    "Transfer-Encoding values other than exactly one chunked, alone (no Content-Length)")

for cid, lines in [
        ("comma-leading", [b"Transfer-Encoding: ,chunked"]),
        ("comma-trailing", [b"Transfer-Encoding: chunked,"]),
        ("chunked-chunked", [b"Transfer-Encoding: chunked, chunked"]),
        ("identity-chunked", [b"Transfer-Encoding: identity, chunked"]),
        ("gzip-chunked", [b"Transfer-Encoding: gzip, chunked"]),
        ("deflate-chunked", [b"Transfer-Encoding: deflate, chunked"]),
        ("cow-chunked", [b"Transfer-Encoding: cow, chunked"]),
        ("chunked-deflate", [b"Transfer-Encoding: chunked, deflate"]),
        ("chunkedchunked", [b"Transfer-Encoding: chunkedchunked"]),
        ("xchunked", [b"Transfer-Encoding: xchunked"]),
        ("pigeons", [b"Transfer-Encoding: pigeons"]),
        ("blegh", [b"Transfer-Encoding: blegh"]),
        ("identity", [b"Transfer-Encoding: identity"]),
        ("two-lines-chunked", [TE, TE]),
        ("two-lines-identity-first", [b"Transfer-Encoding: identity", TE]),
        ("two-lines-deflate-first", [b"Transfer-Encoding: deflate", TE]),
        ("two-lines-empty-second", [TE, b"Transfer-Encoding:"]),
        ("empty", [b"Transfer-Encoding:"]),
        ("nbsp-around", [b"Transfer-Encoding: \xa0chunked\xa0"]),
        ("ff-around", [b"Transfer-Encoding: \xffchunked\xff"]),
        ("nul-inside", [b"Transfer-Encoding: chun\x00ked"]),
        ("name-split", [b"Transfer-", b"Encoding: chunked"]),
        ("chunked-param", [b"Transfer-Encoding: chunked;q=1"]),
        ("formfeed", [b"Transfer-Encoding:\x0cchunked"]),
]:
    case(F, "te-%s" % cid, te_only(lines), "reject", 400)
case(F, "te-http10", te_only([TE]).replace(b"HTTP/1.1", b"HTTP/1.0", 1), "reject", 400,
     "TE on an HTTP/1.0 request (contract item 4)")
case(F, "te-comma-leading-with-cl",
     head(b"GET", b"/", [b"Transfer-Encoding: ,chunked", b"Content-Length: 5"]) + LAST,
     "reject", 400, "Garden transducer bug 15/18 payload")
case(F, "te-empty-with-cl",
     head(b"POST", b"/first", [b"Transfer-Encoding:", b"Content-Length: 5"]) + b"hello",
     "reject", 400, "llhttp 'Empty Transfer-Encoding with Content-Length'")
# Valid spellings: must be forwarded with the chunked body intact.
for cid, line in [("case-Chunked", b"Transfer-Encoding: Chunked"),
                  ("case-upper", b"TRANSFER-ENCODING: CHUNKED"),
                  ("ows-around", b"Transfer-Encoding:   chunked  "),
                  ("nospace", b"Transfer-Encoding:chunked"),
                  ("tab-ows", b"Transfer-Encoding:\tchunked\t")]:
    case(F, "te-ok-%s" % cid, te_only([line]), "accept", None,
         "one chunked coding, case-insensitive, OWS trimmed (contract item 4)")

# ---------------------------------------------------------------------------------------
F = family(
    "content-length",
    "HTTP Garden TROPHIES.md (server bugs 3, 4, 10, 16, 20, 23, 26, 28, 29, 32, 33, 38, "
    "42; transducer bugs 1, 5, 11 (HAProxy CVE-2023-40225), 21, 22), llhttp "
    "test/request/content-length.md (zeroes, overflow, duplicate, spaces, empty, CR in "
    "name), Http11Probe smuggling docs (cl-comma-same/different/triple, cl-double-zero, "
    "cl-hex-prefix, cl-internal-space, cl-leading-zeros(-octal), cl-negative(-zero), "
    "cl-octal, cl-trailing-space, cl-underscore, duplicate-cl-smuggled-get)",
    "malformed, duplicated and obfuscated Content-Length")

def cl_req(values, body, method=b"POST", target=b"/cl", extra=()):
    return head(method, target, list(extra) + [b"Content-Length: " + v for v in values]) + body


SMUG_BODY = SMUG_PLAIN   # 40 bytes
n = len(SMUG_BODY)
for cid, value, expect in [
        ("plus", b"+%d" % n, "reject"), ("minus", b"-1", "reject"),
        ("hex", b"0x%x" % n, "reject"), ("internal-space", b"%d %d" % (n // 10, n % 10), "reject"),
        ("suffix-letter", b"%dZ" % n, "reject"), ("empty", b"", "reject"),
        ("underscore", b"1_0", "reject"), ("negative-zero", b"-0", "reject"),
        ("overflow", b"1000000000000000000000", "reject"), ("float", b"%d.0" % n, "reject"),
        ("list-different", b"%d, 5" % n, "reject"), ("list-empty-item", b"%d," % n, "reject"),
        ("leading-zeros", b"00%d" % n, "either"), ("list-same", b"%d, %d" % (n, n), "either"),
        ("list-triple", b"%d,%d,%d" % (n, n, n), "either"),
        ("trailing-space", b"%d " % n, "accept"), ("tab-ows", b"\t%d\t" % n, "accept"),
]:
    case(F, "cl-%s" % cid, cl_req([value], SMUG_BODY), expect,
         400 if expect == "reject" else None)
case(F, "cl-two-lines-different", cl_req([b"0", b"%d" % n], SMUG_BODY), "reject", 400,
     "Garden transducer bug 22 / server bugs 23, 33")
case(F, "cl-two-lines-different-rev", cl_req([b"%d" % n, b"0"], SMUG_BODY), "reject", 400)
case(F, "cl-two-lines-same", cl_req([b"%d" % n, b"%d" % n], SMUG_BODY), "either", None)
case(F, "cl-empty-then-value", cl_req([b"", b"%d" % n], SMUG_BODY), "reject", 400,
     "HAProxy CVE-2023-40225 (Garden transducer bug 11)")
case(F, "cl-octal-010", cl_req([b"010"], b"0123456789"), "either", None,
     "Garden server bug 32: strtoll(,,0) reads 8")
case(F, "cl-double-zero", cl_req([b"00"], b""), "either", None)
case(F, "cl-name-space-before-colon",
     head(b"POST", b"/cl", [b"Content-Length : %d" % n]) + SMUG_BODY, "reject", 400,
     "Garden server bug 3; RFC 9112 §5.1 MUST 400")
case(F, "cl-name-nel", head(b"POST", b"/cl", [b"Content-Length\x85: %d" % n]) + SMUG_BODY,
     "reject", 400, "Garden server bug 20")
case(F, "cl-no-colon", head(b"POST", b"/cl", [b"Content-Length %d" % n]) + SMUG_BODY,
     "reject", 400, "Garden server bug 28")
case(F, "cl-first-line-tab",
     b"POST /cl HTTP/1.1\r\n\tContent-Length: %d\r\nHost: a.test\r\n\r\n" % n + SMUG_BODY,
     "reject", 400, "Garden server bug 4")
case(F, "cl-obs-fold-value", head(b"POST", b"/cl", [b"Content-Length:", b" %d" % n]) + SMUG_BODY,
     "reject", 400, "issue 12 item 3; Kettle 2025 0.CL obfuscation")
case(F, "cl-cr-in-name", head(b"POST", b"/cl", [b"Content\rLength: %d" % n]) + SMUG_BODY,
     "reject", 400, "llhttp 'Content-Length with CR instead of dash'")
case(F, "cl-underscore-name",
     head(b"POST", b"/cl", [b"Content_Length: %d" % n]) + SMUG_PLAIN.replace(b"/hijacked", b"/second"),
     "accept", None, "dropped by default: no body; the bytes are a second request")
case(F, "cl-get-body", cl_req([b"%d" % n], SMUG_BODY, method=b"GET", target=b"/get-body"),
     "accept", None, "Garden transducer bug 21; Kettle 'Browser-Powered Desync' CL.0")
case(F, "cl-head-body", cl_req([b"%d" % n], SMUG_BODY, method=b"HEAD", target=b"/head-body"),
     "accept", None, "Http11Probe head-cl-body / clte-smuggled-head")
case(F, "cl-options-body", cl_req([b"%d" % n], SMUG_BODY, method=b"OPTIONS", target=b"/opt"),
     "accept", None, "Http11Probe options-cl-body")
case(F, "cl-zero-then-pipelined", cl_req([b"0"], b"") +
     b"POST /second HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n", "accept", None,
     "Garden server bug 48 (pipelined request after Content-Length: 0)")

# ---------------------------------------------------------------------------------------
F = family(
    "chunk-framing",
    "HTTP Garden TROPHIES.md (server bugs 1, 17, 22, 25, 31, 39, 47; transducer bugs 2, "
    "3, 4, 7, 13, 17, 19, 24, 36), llhttp test/request/transfer-encoding.md (lowercase "
    "and uppercase sizes, triple-zero end, extensions and quoting, unbalanced quotes, "
    "no-semicolon extensions, 'Chunk header not terminated by CRLF', 'Chunk data not "
    "terminated by CRLF', space after chunk size), Http11Probe (chunk-bare-cr-term, "
    "chunk-bare-semicolon, chunk-ext-cr/ctrl/lf/invalid-token, chunk-hex-prefix, "
    "chunk-leading-sp, chunk-lf-term, chunk-missing-trailing-crlf, chunk-negative, "
    "chunk-size-plus, chunk-size-trailing-ows, chunk-spill, chunk-underscore), "
    "PortSwigger ChunkSizeScan/ChunkExtensionScan, tether issue 12 item 7",
    "chunk-size lines, extensions and chunk data, in a valid-TE request")


def chunked_req(body, target=b"/chunks"):
    return head(b"POST", target, [TE]) + body


for cid, body, expect in [
        ("hex-prefix", b"0x5\r\nhello\r\n" + LAST, "reject"),
        ("plus", b"+5\r\nhello\r\n" + LAST, "reject"),
        ("negative", b"-5\r\nhello\r\n" + LAST, "reject"),
        ("negative-zero-hex", b"-0x0\r\n\r\n", "reject"),
        ("underscore", b"0_2e\r\n\r\n" + SMUG_PLAIN, "reject"),
        ("leading-space", b" 5\r\nhello\r\n" + LAST, "reject"),
        ("leading-spaces-last", b"5\r\nhello\r\n           0\r\n\r\n", "reject"),
        ("trailing-space", b"5 \r\nhello\r\n" + LAST, "reject"),
        ("no-semicolon-ext", b"2 erfrferferf\r\naa\r\n0 rrrr\r\n\r\n", "reject"),
        ("bare-semicolon", b"2;\r\naa\r\n" + LAST, "reject"),
        ("ext-unbalanced-quote", b'5;a="abc\r\nhello\r\n' + LAST, "reject"),
        ("ext-ctl", b"5;a=b\x01c\r\nhello\r\n" + LAST, "reject"),
        ("ext-nul", b"5;a\x00\r\nhello\r\n" + LAST, "reject"),
        ("ext-bare-lf", b"5;a\nhello\r\n" + LAST, "reject"),
        ("size-bare-cr", b"5\r\rhello\r\n" + LAST, "reject"),
        ("size-cr-ext-garden31", b"5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\n" + SMUG_PLAIN, "reject"),
        ("ext-cr-garden36", b"41;a=b\r\r" + b"X" * 65 + b"\r\n" + LAST, "reject"),
        ("ows-cr-transducer3", b"2\r\r;a\r\n02\r\n41\r\n" + LAST, "reject"),
        ("garbage-after-size", b"1these-bytes-never-get-validated\r\nZ\r\n" + LAST, "reject"),
        ("invalid-sizes", b"Z\r\nZZ\r\nZZZ\r\n\r\n", "reject"),
        ("data-no-crlf", b"5\r\nABCDE0\r\n\r\n", "reject"),
        ("data-lf-only", b"a\r\n0123456789\n0\r\n\r\n", "reject"),
        ("size-lf-only", b"5\nhello\r\n" + LAST, "reject"),
        ("last-chunk-lf-only", b"5\r\nhello\r\n0\n\n", "reject"),
        ("empty-size-line", b"\r\n\r\n", "reject"),
        ("data-spill", b"3\r\nhello\r\n" + LAST, "reject"),
        ("invalid-then-request-garden47", b"INVALID!!!\r\n" + SMUG_PLAIN, "reject"),
        ("size-17-digits", b"00000000000000005\r\nhello\r\n" + LAST, "reject"),
        ("size-huge", b"ffffffffffffffffff\r\nhello\r\n" + LAST, "reject"),
        ("ext-5000-bytes", b"5;x=" + b"a" * 5000 + b"\r\nhello\r\n" + LAST, "reject"),
        ("trailer-obs-fold", b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n", "reject"),
        ("trailer-bare-lf", b"5\r\nhello\r\n0\r\nX-T: a\nX-U: b\r\n\r\n", "reject"),
        ("trailer-nul", b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n", "reject"),
        ("trailer-empty-name", b"5\r\nhello\r\n0\r\n: x\r\n\r\n", "reject"),
        ("trailer-no-colon", b"5\r\nhello\r\n0\r\nNoColon\r\n\r\n", "reject"),
        ("lowercase-hex", b"a\r\n0123456789\r\n" + LAST, "accept"),
        ("uppercase-hex", b"A\r\n0123456789\r\n" + LAST, "accept"),
        ("triple-zero-end", b"5\r\nhello\r\n6\r\n world\r\n000\r\n\r\n", "accept"),
        ("size-16-digits", b"0000000000000005\r\nhello\r\n" + LAST, "accept"),
        ("extensions", b"5;ilovew3;somuchlove=aretheseparametersfor;another=withvalue\r\nhello\r\n"
                       b"6;blahblah;blah\r\n world\r\n" + LAST, "accept"),
        ("ext-quoted", b'5;ilovew3="I \\"love\\"; \\\\extensions\\\\";blah;foo=bar\r\nhello\r\n' + LAST,
         "accept"),
        ("ext-bws", b"5 ;a=b\r\nhello\r\n" + LAST, "either"),
        ("smuggle-in-data", chunk(SMUG_PLAIN) + LAST, "accept"),
        ("zero-length-then-data-transducer17", b"17\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n\r\n" + LAST,
         "accept"),
        ("many-small-chunks", b"".join(chunk(b"x") for _ in range(200)) + LAST, "accept"),
]:
    case(F, "chunk-%s" % cid, chunked_req(body), expect, 400 if expect == "reject" else None)

# Trailers (issue 12 item 1, Http11Probe trailer-*): forwarded as trailers minus the deny
# list, never as head fields.
for cid, fields in [
        ("content-length", [b"Content-Length: 40"]),
        ("transfer-encoding", [b"Transfer-Encoding: chunked"]),
        ("host", [b"Host: evil.test"]),
        ("authorization", [b"Authorization: Bearer evil"]),
        ("content-type", [b"Content-Type: text/evil"]),
        ("x-forwarded-for", [b"X-Forwarded-For: 10.6.6.6"]),
        ("request-line-value-garden39", [b"X:POST / HTTP/1.1"]),
        ("allowed", [b"X-Checksum: abc", b"X-Other: 1"]),
        ("mixed", [b"X-Checksum: abc", b"Content-Length: 40", b"Cookie: a=b", b"X-Request-Id: evil"]),
        ("many", [b"X-T%d: %s" % (i, b"v" * 50) for i in range(60)]),
]:
    case(F, "trailer-%s" % cid,
         chunked_req(b"5\r\nhello\r\n0\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n",
                     target=b"/trailers"), "accept", None,
         "trailers stay trailers; denied names dropped (contract item 1)")

# ---------------------------------------------------------------------------------------
F = family(
    "request-line",
    "HTTP Garden TROPHIES.md (server bugs 5, 6, 7, 9, 15, 24, 40), Http11Probe "
    "(absolute-uri-host-mismatch), RFC 9112 §3 and tether issue 12 item 6 (versions, "
    "CONNECT, OPTIONS *, '*' with other methods, fragments, absolute-form)",
    "request lines: versions, methods, targets")

for cid, line, expect, status in [
        ("http12", b"GET /v HTTP/1.2", "reject", 505),
        ("http20", b"GET /v HTTP/2.0", "reject", 505),
        ("http09-version", b"GET /v HTTP/0.9", "reject", 505),
        ("http132", b"GET /v HTTP/1.32", "reject", 400),
        ("version-overflow", b"GET /v HTTP/4294967295.255", "reject", 400),
        ("version-lowercase", b"GET /v http/1.1", "reject", 400),
        ("version-cr-garden15", b"GET /v HTTP/\r\r1.1", "reject", 400),
        ("version-trailing-space", b"GET /v HTTP/1.1 ", "reject", 400),
        ("double-space", b"GET  /v HTTP/1.1", "reject", 400),
        ("tab-separator", b"GET\t/v\tHTTP/1.1", "reject", 400),
        ("lf-separator-garden9", b"GET /v\nHTTP/1.1", "reject", 400),
        ("method-invalid-garden6", b'G=":<>(e),[T];? /get HTTP/1.1', "reject", 400),
        ("method-nul-garden40", b"\x00 / HTTP/1.1", "reject", 400),
        ("target-bang-garden7", b"GET ! HTTP/1.1", "reject", 400),
        ("target-nul", b"GET /a\x00b HTTP/1.1", "reject", 400),
        ("target-del", b"GET /a\x7fb HTTP/1.1", "reject", 400),
        ("target-relative", b"GET a/b HTTP/1.1", "reject", 400),
        ("target-fragment", b"GET /a#frag HTTP/1.1", "reject", 400),
        ("asterisk-get", b"GET * HTTP/1.1", "reject", 400),
        ("connect-authority", b"CONNECT a.test:443 HTTP/1.1", "reject", 405),
        ("connect-origin", b"CONNECT / HTTP/1.1", "reject", 405),
        ("absolute-mismatch", b"GET http://b.test/x HTTP/1.1", "reject", 400),
        ("absolute-ftp", b"GET ftp://a.test/x HTTP/1.1", "reject", 400),
        ("absolute-userinfo", b"GET http://u:p@a.test/x HTTP/1.1", "reject", 400),
        ("options-asterisk", b"OPTIONS * HTTP/1.1", "accept", None),
        ("absolute-form", b"GET http://a.test/x?q=1 HTTP/1.1", "accept", None),
        ("absolute-no-path", b"GET http://a.test HTTP/1.1", "accept", None),
        ("absolute-query-only", b"GET http://a.test?q HTTP/1.1", "accept", None),
        ("absolute-case", b"GET HTTP://A.TEST/x HTTP/1.1", "accept", None),
        ("method-unknown", b"PURGE /v HTTP/1.1", "accept", None),
        ("method-gget", b"GGET /v HTTP/1.1", "accept", None),
        ("target-high-bytes", b"GET /caf\xc3\xa9 HTTP/1.1", "either", None),
]:
    case(F, "rl-%s" % cid, line + b"\r\nHost: a.test\r\n\r\n", expect, status)
case(F, "rl-no-version", b"GET /v\r\nHost: a.test\r\n\r\n", "reject", 400,
     "HTTP/0.9-style request line (contract item 6)")
case(F, "rl-http09-simple", b"GET /v\r\n\r\n", "reject", 400)
case(F, "rl-all-lf-transducer16", b"GET /v HTTP/1.1\nHost: a.test\nConnection: close\n\n",
     "reject", 400, "Garden transducer bug 16")
case(F, "rl-http10-no-host", b"GET /v10 HTTP/1.0\r\n\r\n", "accept", None,
     "forwarded as HTTP/1.1 with Host: <backend> (contract item 6)")
case(F, "rl-http10-keepalive-no-host", b"GET /v10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
     "accept", None)

# ---------------------------------------------------------------------------------------
F = family(
    "host",
    "RFC 9112 §3.2, tether issue 12 item 6; PortSwigger HTTP Request Smuggler "
    "ParserDiscrepancyScan/HiddenPair (Kettle, 'HTTP/1.1 must die', 2025: Host-invalid "
    "'foo/bar' canary, SPACE/TAB/WRAP/HOP/LPAD hiding); HTTP Garden transducer bug 12 "
    "(NUL in Host), server bug 46; Http11Probe multiple-host-comma",
    "missing, duplicated, hidden and invalid Host")

for cid, lines, expect in [
        ("missing", [], "reject"),
        ("two", [b"Host: a.test", b"Host: b.test"], "reject"),
        ("two-same", [b"Host: a.test", b"Host: a.test"], "reject"),
        ("comma-list", [b"Host: a.test, b.test"], "reject"),
        ("space-inside", [b"Host: a b"], "reject"),
        ("slash-kettle-canary", [b"Host: foo/bar"], "reject"),
        ("at-sign", [b"Host: a.test@evil.test"], "reject"),
        ("nul-garden12", [b"Host: a.test\x00.evil.test"], "reject"),
        ("high-bytes-garden46", [b"Host: \xffa\xff"], "reject"),
        ("hidden-space-kettle", [b"X: y", b" Host: a.test"], "reject"),
        ("hidden-wrap-kettle", [b"Host: a.test", b"X: y", b" Host: b.test"], "reject"),
        ("connection-host", [b"Host: a.test", b"Connection: Host"], "reject"),
        ("connection-host-mixed-case", [b"Host: a.test", b"Connection: keep-alive, hOsT"], "reject"),
        ("port", [b"Host: a.test:8080"], "accept"),
        ("tab-ows", [b"Host:\ta.test\t"], "accept"),
        ("ipv6", [b"Host: [::1]:80"], "accept"),
        ("empty", [b"Host:"], "either"),
]:
    case(F, "host-%s" % cid, head(b"GET", b"/host", lines, host=None), expect,
         400 if expect == "reject" else None)

# ---------------------------------------------------------------------------------------
F = family(
    "field-syntax",
    "HTTP Garden TROPHIES.md (server bugs 2, 8, 13, 14, 18, 19, 27, 30, 34, 35, 41, 43; "
    "transducer bugs 6, 10, 14, 20), Http11Probe (bare-cr-header-value, "
    "header-injection), PortSwigger ParserDiscrepancyScan commented probes (nsplit, "
    "rsplit, null-term), nginx/Envoy underscore handling (tether issue 12 item 5)",
    "bytes in field names and values, empty names, underscores")

for cid, lines, expect in [
        ("value-nul", [b"X-A: a\x00b"], "reject"),
        ("value-cr", [b"X-A: a\rb"], "reject"),
        ("value-cr-smuggled-garden13", [b"Visible: :/\rSmuggled: :)"], "reject"),
        ("value-lf", [b"X-A: a\nX-B: b"], "reject"),
        ("value-lf-lf-garden19", [b"Useless:\n\nGET /hijacked HTTP/1.1"], "reject"),
        ("value-ctl-01", [b"X-A: a\x01b"], "reject"),
        ("value-del", [b"X-A: a\x7fb"], "reject"),
        ("value-trailing-nul-garden43", [b"Evil: evil\x00"], "reject"),
        ("value-obs-text-garden41", [b"User: \x85admin\xa0"], "either"),
        ("name-empty", [b": x"], "reject"),
        ("name-empty-te", [b":transfer-encoding: chunked"], "reject"),
        ("name-colon-only-garden27", [b":", b"I: am chopped off"], "reject"),
        ("name-high-byte-garden8", [b"\xefoo: bar"], "reject"),
        ("name-nel-transducer6", [b"Header\x85: value"], "reject"),
        ("name-paren", [b"X(A): b"], "reject"),
        ("name-at", [b"X@A: b"], "reject"),
        ("name-lf-transducer14", [b"Te\nst: test"], "reject"),
        ("name-nul-transducer20", [b"a:b", b"c\x00"], "reject"),
        ("no-colon", [b"No colon here"], "reject"),
        ("cr-line-garden30", [b"X: a", b"\rZGET /evil: HTTP/1.1"], "reject"),
        ("obs-fold", [b"X-Long: a", b"  folded"], "reject"),
        ("obs-fold-empty-first-te", [b"Transfer-Encoding:", b" chunked"], "reject"),
        ("obs-fold-double", [b"X-A:", b" a", b"\tb"], "reject"),
        ("underscore-xff", [b"X_Forwarded_For: 10.6.6.6"], "accept"),
        ("underscore-custom", [b"X_Custom_Auth: admin"], "accept"),
        ("many-fields", [b"X-F%d: v" % i for i in range(90)], "accept"),
]:
    case(F, "field-%s" % cid, head(b"GET", b"/fields", lines), expect,
         400 if expect == "reject" else None)

# ---------------------------------------------------------------------------------------
F = family(
    "connection-hop",
    "tether issue 12 item 2 (Connection: Content-Length smuggling), PortSwigger "
    "DesyncBox 'connection' permutation and HiddenPair HOP technique (Kettle 2025), "
    "RFC 9110 §7.6.1",
    "Connection naming framing or routing fields")

cl_body = SMUG_PREFIX
for cid, conn, extra, expect in [
        ("content-length", b"Connection: Content-Length", [], "reject"),
        ("content-length-close", b"Connection: close, Content-Length", [], "reject"),
        ("content-length-case", b"Connection: cOnTeNt-LeNgTh", [], "reject"),
        ("two-lines", b"Connection: keep-alive", [b"Connection: Content-Length"], "reject"),
        ("keep-alive-custom", b"Connection: keep-alive, X-Drop-Me", [b"X-Drop-Me: 1"], "accept"),
        ("upgrade-without-upgrade", b"Connection: Upgrade", [], "accept"),
]:
    case(F, "conn-%s" % cid,
         head(b"POST", b"/hop", [conn] + extra + [b"Content-Length: %d" % len(cl_body)]) + cl_body,
         expect, 400 if expect == "reject" else None)
case(F, "conn-transfer-encoding",
     head(b"POST", b"/hop", [b"Connection: Transfer-Encoding", TE]) + chunk(SMUG_PLAIN) + LAST,
     "reject", 400)

# ---------------------------------------------------------------------------------------
F = family(
    "expect-0cl",
    "James Kettle, 'HTTP/1.1 must die: the desync endgame' (PortSwigger, 2025: 0.CL and "
    "Expect-based desync, obfuscated Expect), 'Browser-Powered Desync Attacks' (2022: "
    "CL.0, pause-based), Http11Probe expect-100-cl / expect-100-cl-desync / "
    "get-cl-body-desync / get-cl-prefix-desync / cl0-body-poison",
    "Expect: 100-continue and bodies on methods that usually have none")

eb = b"hello"
case(F, "expect-100-body-sent", head(b"POST", b"/expect", [b"Expect: 100-continue",
                                                             b"Content-Length: 5"]) + eb,
     "accept", None, "body sent without waiting for 100")
case(F, "expect-100-smuggle-body", head(b"POST", b"/expect", [
    b"Expect: 100-continue", b"Content-Length: %d" % len(SMUG_PLAIN)]) + SMUG_PLAIN,
     "accept", None, "a proxy that forwards the head and waits must still frame the body")
case(F, "expect-100-get-no-body", head(b"GET", b"/expect", [b"Expect: 100-continue"]),
     "accept", None)
case(F, "expect-100-cl-zero", head(b"POST", b"/expect", [b"Expect: 100-continue",
                                                           b"Content-Length: 0"]),
     "accept", None)
case(F, "expect-obfuscated-y", head(b"POST", b"/expect", [b"Expect: y 100-continue",
                                                            b"Content-Length: 5"]) + eb,
     "either", None, "Kettle 2025 obfuscated Expect")
case(F, "expect-obs-fold", head(b"POST", b"/expect", [b"Expect:", b" 100-continue",
                                                        b"Content-Length: 5"]) + eb,
     "reject", 400)
case(F, "expect-two", head(b"POST", b"/expect", [b"Expect: 100-continue", b"Expect: 100-continue",
                                                   b"Content-Length: 5"]) + eb,
     "either", None)
case(F, "expect-chunked", head(b"POST", b"/expect", [b"Expect: 100-continue", TE]) +
     chunk(eb) + LAST, "accept", None)
case(F, "expect-unknown", head(b"POST", b"/expect", [b"Expect: 200-ok",
                                                      b"Content-Length: 5"]) + eb,
     "either", None)
case(F, "0cl-get-prefix", head(b"GET", b"/static.css", [b"Content-Length: %d" % len(SMUG_PREFIX)]) +
     SMUG_PREFIX, "accept", None, "CL.0: the body is a request prefix; it must stay a body")
case(F, "0cl-post-static-full", head(b"POST", b"/robots.txt", [b"Content-Length: %d" % len(SMUG_PLAIN)]) +
     SMUG_PLAIN, "accept", None, "CL.0 against a static path")
case(F, "0cl-obfuscated-space", head(b"GET", b"/x", [b"Content-Length : %d" % len(SMUG_PLAIN)]) +
     SMUG_PLAIN, "reject", 400, "0.CL: one side ignores the obfuscated Content-Length")
case(F, "0cl-obfuscated-lpad", b"GET /x HTTP/1.1\r\n Content-Length: %d\r\nHost: a.test\r\n\r\n"
     % len(SMUG_PLAIN) + SMUG_PLAIN, "reject", 400, "HiddenPair LPAD")

# ---------------------------------------------------------------------------------------
F = family(
    "controls",
    "baseline requests (RFC 9112 examples; llhttp test/request/sample.md and "
    "pipelining.md), so that the differential also proves well-formed input is forwarded "
    "byte-exact",
    "well-formed requests that must be forwarded")

case(F, "ctl-get", head(b"GET", b"/plain", []), "accept")
case(F, "ctl-post-cl", cl_req([b"%d" % n], SMUG_BODY, target=b"/post"), "accept")
case(F, "ctl-post-chunked", chunked_req(chunk(b"hello") + chunk(b" world") + LAST), "accept")
case(F, "ctl-pipelined", head(b"GET", b"/one", []) + head(b"GET", b"/two", []), "accept")
case(F, "ctl-pipelined-post", cl_req([b"5"], b"hello", target=b"/p1") +
     head(b"GET", b"/two", []), "accept")
case(F, "ctl-keepalive-close", head(b"GET", b"/closing", [b"Connection: close"]), "accept")
case(F, "ctl-query", head(b"GET", b"/q?a=1&b=%20x", []), "accept")
case(F, "ctl-empty-body-post", cl_req([b"0"], b"", target=b"/empty"), "accept")


def main():
    out = {"version": 1,
           "about": "Hostile HTTP/1.1 requests for tests/e2e/test_smuggling.py; generated "
                    "by corpus/gen_smuggling.py (edit that, then rerun it).",
           "families": FAMILIES, "cases": CASES}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smuggling.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=True)
        f.write("\n")
    print("%d cases in %d families -> %s" % (len(CASES), len(FAMILIES), path))


if __name__ == "__main__":
    main()
