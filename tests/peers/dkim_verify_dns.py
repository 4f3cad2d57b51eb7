"""Verify the DKIM signatures of messages with dkimpy, keys from real DNS.

argv[1] is the name server, IP:PORT (a dnsmasq the test runs); stdin is a
JSON list of messages. Prints one line per message: `pass d=... s=...` when
it has at least one signature and all pass, else `fail d=... s=...: why`.
"""
import json
import sys

import dkim
import dns.resolver


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.cache = None

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(name.rstrip("."), "TXT", lifetime=timeout)
        except Exception:
            return None
        return b"".join(b"".join(r.strings) for r in answer[:1])

    for message in json.load(sys.stdin):
        raw = message.encode("utf-8", "surrogateescape")
        count = raw.lower().count(b"\ndkim-signature:") + raw.lower().startswith(b"dkim-signature:")
        if count == 0:
            print("fail no DKIM-Signature header")
            continue
        verdicts = []
        for index in range(count):
            verifier = dkim.DKIM(raw)
            passed = verifier.verify(idx=index, dnsfunc=dnsfunc)
            tags = verifier.signature_fields or {}
            d = tags.get(b"d", b"?").decode()
            s = tags.get(b"s", b"?").decode()
            verdicts.append((passed, "d=%s s=%s" % (d, s)))
        ok = all(p for p, _ in verdicts)
        print(("pass " if ok else "fail ") + " ".join(v for _, v in verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
