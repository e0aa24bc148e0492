#!/usr/bin/env python3
"""Independent check of a lienthong push signature (docs/push.md) with Python `cryptography`:

    webhook_verify.py CERT.pem ID TIMESTAMP SIGNATURES BODYFILE

Exits 0 when one of the space-separated signatures (v1e: ECDSA P-256 SHA-256 r||s; v1r:
RSASSA-PKCS1-v1_5 SHA-256) verifies over "{id}.{timestamp}.{body}" with the certificate's key.
"""
import base64
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

cert_pem, wid, ts, signatures, body_file = sys.argv[1:6]
key = x509.load_pem_x509_certificate(open(cert_pem, "rb").read()).public_key()
content = f"{wid}.{ts}.".encode() + open(body_file, "rb").read()
for item in signatures.split():
    version, _, b64 = item.partition(",")
    sig = base64.b64decode(b64)
    try:
        if version == "v1e" and isinstance(key, ec.EllipticCurvePublicKey):
            r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
            key.verify(encode_dss_signature(r, s), content, ec.ECDSA(hashes.SHA256()))
        elif version == "v1r" and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, content, padding.PKCS1v15(), hashes.SHA256())
        else:
            continue
        print("verified")
        sys.exit(0)
    except Exception as e:  # InvalidSignature
        print(f"{version}: {e!r}")
sys.exit(1)
