"""Verify every DKIM-Signature of the message on stdin with dkimpy.

The public key comes from the TXT record given as the first argument, not
from DNS, so the check needs no network. Prints one line per signature and
exits 0 only if there is at least one and all pass.
"""
import re
import sys

import dkim


def main():
    record = sys.argv[1].encode("ascii")
    message = sys.stdin.buffer.read()
    names = re.findall(rb"(?im)^dkim-signature:", message)
    if not names:
        print("fail: no DKIM-Signature header")
        return 1
    ok = True
    for index in range(len(names)):
        verifier = dkim.DKIM(message)
        passed = verifier.verify(idx=index, dnsfunc=lambda name, timeout=5: record)
        tags = verifier.signature_fields or {}
        d = tags.get(b"d", b"?").decode()
        s = tags.get(b"s", b"?").decode()
        h = tags.get(b"h", b"?").decode()
        print("%s d=%s s=%s h=%s" % ("pass" if passed else "fail", d, s, h))
        ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
