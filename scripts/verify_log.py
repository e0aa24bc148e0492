#!/usr/bin/env python3
"""An independent check of lienthong's audit log and receipts, written from the RFC texts
(RFC 6962 / RFC 9162 Merkle trees, RFC 7515 JWS) and sharing no code with the hub.

    verify_log.py --export export.jsonl --head head.jws --hub-cert hub-signing.pem
                  [--receipts receipts.txt] [--consistency old.jws:proof.json ...]

- the head's JWS signature verifies with the hub certificate's key (ES256 or RS256);
- the Merkle tree hash of the first tree_size exported lines equals the head's root_hash;
- each receipt (one JWS per line) verifies, and the entry at its audit_index is the event it
  claims (accepted / delivered, same document, same agency);
- each consistency proof leads from the older signed head's root to this head's root.
Exit status 0 when all hold; otherwise the first failure is printed and the status is 1.
Needs the `cryptography` package (scripts/pyenv.sh installs it).
"""

import argparse
import base64
import hashlib
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


class Invalid(Exception):
    pass


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jws_payload(jws, key):
    """RFC 7515 compact serialization: verifies and returns the decoded payload."""
    parts = jws.strip().split(".")
    if len(parts) != 3:
        raise Invalid("a JWS has three parts")
    header = json.loads(b64url(parts[0]))
    signing_input = (parts[0] + "." + parts[1]).encode()
    sig = b64url(parts[2])
    alg = header.get("alg")
    try:
        if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
            if len(sig) != 64:
                raise Invalid("an ES256 signature is 64 bytes")
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        elif alg == "RS256" and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise Invalid(f"unexpected alg {alg!r} for the hub's key")
    except Invalid:
        raise
    except Exception as e:  # cryptography raises InvalidSignature
        raise Invalid(f"JWS signature does not verify: {e!r}")
    return json.loads(b64url(parts[1]))


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    """RFC 6962 2.1: the Merkle tree hash of a list of leaf hashes."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_consistency(first, second, first_hash, second_hash, proof):
    """RFC 9162 2.1.4.2: checks a consistency proof between tree sizes first <= second."""
    if first == second:
        if proof:
            raise Invalid("a proof between equal sizes is empty")
        if first_hash != second_hash:
            raise Invalid("equal sizes with different roots")
        return
    if first == 0:
        return
    if first > second:
        raise Invalid("first > second")
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, first_hash)
    if not path:
        raise Invalid("empty consistency proof")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Invalid("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != first_hash or sr != second_hash:
        raise Invalid(f"consistency proof {first}->{second} does not hold")


def verify_inclusion(index, size, leaf, root, path):
    """RFC 9162 2.1.3.2: checks an inclusion proof of `leaf` at `index` in a tree of `size`."""
    if index >= size:
        raise Invalid("index beyond the tree")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise Invalid("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise Invalid(f"inclusion proof of {index} does not hold")


def check_receipt(payload, entries):
    kind = payload.get("type")

    def entry(i, event, document, agency=None):
        if not isinstance(i, int) or i >= len(entries):
            raise Invalid(f"receipt points at {i}, beyond the export")
        e = entries[i]
        if e.get("event") != event or e.get("document") != document:
            raise Invalid(f"entry {i} is {e.get('event')} of {e.get('document')}, the receipt says {event} of {document}")
        if agency is not None and e.get("agency") != agency:
            raise Invalid(f"entry {i} is by {e.get('agency')}, the receipt says {agency}")

    if kind == "submission":
        entry(payload["audit_index"], "accepted", payload["id"], payload["sender"])
    elif kind == "delivery":
        entry(payload["audit_index"], "delivered", payload["id"], payload["recipient"])
    elif kind == "delivery_batch":
        for item in payload["items"]:
            entry(item["audit_index"], "delivered", item["id"], payload["recipient"])
    else:
        raise Invalid(f"unknown receipt type {kind!r}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", required=True)
    ap.add_argument("--head", required=True)
    ap.add_argument("--hub-cert", required=True)
    ap.add_argument("--receipts")
    ap.add_argument("--consistency", action="append", default=[],
                    help="OLD_HEAD_JWS_FILE:PROOF_JSON_FILE (the hub's /v1/audit/consistency answer)")
    ap.add_argument("--inclusion", action="append", default=[],
                    help="PROOF_JSON_FILE (the hub's /v1/audit/proof answer)")
    a = ap.parse_args(argv)
    key = x509.load_pem_x509_certificate(open(a.hub_cert, "rb").read()).public_key()
    try:
        head = jws_payload(open(a.head).read(), key)
        if head.get("type") != "tree_head":
            raise Invalid("not a tree head")
        size, root = head["tree_size"], bytes.fromhex(head["root_hash"])
        lines = open(a.export, "rb").read().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        if len(lines) < size:
            raise Invalid(f"the export has {len(lines)} entries, the head covers {size}")
        entries = []
        for i, line in enumerate(lines[:size]):
            e = json.loads(line)
            if e.get("index") != i:
                raise Invalid(f"line {i} holds entry {e.get('index')}")
            entries.append(e)
        leaves = [leaf_hash(line) for line in lines[:size]]
        if mth(leaves) != root:
            raise Invalid("the export's Merkle tree hash is not the head's root")
        receipts = 0
        if a.receipts:
            for jws in open(a.receipts).read().split():
                check_receipt(jws_payload(jws, key), entries)
                receipts += 1
        for spec in a.consistency:
            old_file, proof_file = spec.split(":", 1)
            old = jws_payload(open(old_file).read(), key)
            proof = json.load(open(proof_file))
            if proof["from"] != old["tree_size"] or proof["to"] != size:
                raise Invalid(f"proof {proof['from']}->{proof['to']} is not {old['tree_size']}->{size}")
            verify_consistency(old["tree_size"], size, bytes.fromhex(old["root_hash"]), root,
                               [bytes.fromhex(h) for h in proof["proof"]])
        for proof_file in a.inclusion:
            p = json.load(open(proof_file))
            if p["tree_size"] != size:
                raise Invalid("an inclusion proof for another tree size")
            leaf = leaf_hash(p["entry"].encode())
            if leaf != leaves[p["index"]]:
                raise Invalid(f"the proven entry {p['index']} is not the exported one")
            verify_inclusion(p["index"], size, leaf, root, [bytes.fromhex(h) for h in p["audit_path"]])
    except (Invalid, KeyError, ValueError) as e:
        print(f"INVALID: {e}", file=sys.stderr)
        return 1
    print(f"ok: {size} entries, root {root.hex()}, {receipts} receipts, "
          f"{len(a.consistency)} consistency and {len(a.inclusion)} inclusion proofs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
