#!/usr/bin/env python3
"""Makes the PDF signature fixtures of tests/pdf_signatures.rs in OUT_DIR, at test time, with
independent tools: `cryptography` for a test PKI, fpdf2 for the base document, pyHanko for the
signatures and the incremental overlay.

The PKI mirrors Vietnamese practice (Decree 30/2020, Art. 5): the leader signs with a personal
certificate (subject UID=CCCD:<citizen id>), the agency issues with an organisation certificate
(UID=MST:<tax code>). Files written:

  ca.pem, personal.{pem,key}, organisation.{pem,key}, other-ca.pem, stranger.{pem,key}
  base.pdf            unsigned
  personal.pdf        the leader's signature only
  organisation.pdf    the agency's signature only
  two_layer.pdf       leader, then agency (the legal form)
  reversed.pdf        agency, then leader
  overlay.pdf         two_layer.pdf + a text stamp drawn on the page afterwards
  untrusted.pdf       two layers, the agency's by a certificate of another CA
  expired.pdf         two layers, the leader's certificate expired before it signed
  stamped.pdf         the same, but an RFC 3161 time stamp (tsa.pem) puts the leader's
                      signature inside the certificate's validity
"""
import datetime
import io
import time
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from fpdf import FPDF
from pyhanko.keys import load_cert_from_pemder, load_private_key_from_pemder
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko.sign import signers
from pyhanko.stamp import TextStamp, TextStampStyle

UID = NameOID.USER_ID
NOW = datetime.datetime.now(datetime.timezone.utc)


def name(cn, uid, org=None):
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    if uid:
        attrs.append(x509.NameAttribute(UID, uid))
    return x509.Name(attrs)


def write_key(key, path):
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def make_ca(out, stem, cn):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = name(cn, None, "lienthong test PKI")
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=30))
            .not_valid_after(NOW + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    (out / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def make_signer(out, stem, ca_key, ca_cert, subject, rsa_key, valid=(-1, 730), tsa=False):
    key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if rsa_key
           else ec.generate_private_key(ec.SECP256R1()))
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + datetime.timedelta(days=valid[0]))
               .not_valid_after(NOW + datetime.timedelta(days=valid[1]))
               .add_extension(x509.KeyUsage(True, True, False, False, False, False, False,
                                            False, False), critical=True))
    if tsa:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    cert = builder.sign(ca_key, hashes.SHA256())
    (out / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_key(key, out / f"{stem}.key")
    return signers.SimpleSigner.load(str(out / f"{stem}.key"), str(out / f"{stem}.pem"))


def base_pdf(payload=b""):
    """A one-page decision; `payload` (incompressible bytes) is embedded as a file to make
    large documents for timing, as scanned appendices make real ones large."""
    pdf = FPDF()
    pdf.set_compression(True)
    if payload:
        pdf.embed_file(bytes=payload, basename="phu-luc.bin", compress=False)
    pdf.add_page()
    pdf.set_font("helvetica", size=14)
    pdf.cell(text="QUYET DINH so 12/QD-UBND: ve viec phe duyet ke hoach nam 2026")
    pdf.ln(12)
    pdf.cell(text="Noi dung van ban: ... (trang 1)")
    return bytes(pdf.output())


def sign(data, signer, field, timestamper=None):
    w = IncrementalPdfFileWriter(io.BytesIO(data))
    meta = signers.PdfSignatureMetadata(field_name=field, subfilter=None)
    out = signers.sign_pdf(w, meta, signer=signer, timestamper=timestamper)
    return out.getvalue()


def time_stamper(out, at):
    """pyHanko's own RFC 3161 authority (no network), stamping `at`."""
    return DummyTimeStamper(
        tsa_cert=load_cert_from_pemder(str(out / "tsa.pem")),
        tsa_key=load_private_key_from_pemder(str(out / "tsa.key"), passphrase=None),
        fixed_dt=at)


def overlay(data):
    w = IncrementalPdfFileWriter(io.BytesIO(data))
    stamp = TextStamp(writer=w, style=TextStampStyle(stamp_text="DA SUA: 99/QD-UBND"))
    stamp.apply(0, 50, 600)
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def main(out):
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca = make_ca(out, "ca", "lienthong test root")
    other_key, other = make_ca(out, "other-ca", "some other root")
    personal = make_signer(out, "personal", ca_key, ca,
                           name("Nguyen Van A", "CCCD:079123456789"), rsa_key=True)
    organisation = make_signer(out, "organisation", ca_key, ca,
                               name("UBND Quan 1", "MST:0301234567", "UBND Quan 1"),
                               rsa_key=False)
    stranger = make_signer(out, "stranger", other_key, other,
                           name("UBND Quan 1", "MST:0301234567", "UBND Quan 1"),
                           rsa_key=False)
    expired = make_signer(out, "expired-personal", ca_key, ca,
                          name("Tran Thi B", "CCCD:079987654321"), rsa_key=True,
                          valid=(-3, -1))
    make_signer(out, "tsa", ca_key, ca, name("lienthong test TSA", None, "lienthong test PKI"),
                rsa_key=True, valid=(-30, 730), tsa=True)  # pyHanko's dummy TSA: RSA only
    base = base_pdf()
    files = {"base.pdf": base}
    files["personal.pdf"] = sign(base, personal, "Leader")
    files["organisation.pdf"] = sign(base, organisation, "Agency")
    # The second signatures come at least a second later, as in life: pyHanko then rewrites
    # the XMP metadata stream (ModifyDate), which the verifier must accept.
    time.sleep(1.1)
    files["two_layer.pdf"] = sign(files["personal.pdf"], organisation, "Agency")
    files["reversed.pdf"] = sign(files["organisation.pdf"], personal, "Leader")
    files["overlay.pdf"] = overlay(files["two_layer.pdf"])
    files["untrusted.pdf"] = sign(files["personal.pdf"], stranger, "Agency")
    two_days_ago = NOW - datetime.timedelta(days=2)
    files["expired.pdf"] = sign(sign(base, expired, "Leader"), organisation, "Agency")
    files["stamped.pdf"] = sign(
        sign(base, expired, "Leader", timestamper=time_stamper(out, two_days_ago)),
        organisation, "Agency")
    for f, data in files.items():
        (out / f).write_bytes(data)


def big(out, mib):
    """big_<mib>mib.pdf: a two-layer PDF of about `mib` MiB (after main() made the PKI)."""
    import os
    personal = signers.SimpleSigner.load(str(out / "personal.key"), str(out / "personal.pem"))
    organisation = signers.SimpleSigner.load(
        str(out / "organisation.key"), str(out / "organisation.pem"))
    data = base_pdf(os.urandom(mib << 20))
    data = sign(sign(data, personal, "Leader"), organisation, "Agency")
    (out / f"big_{mib}mib.pdf").write_bytes(data)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    for size in sys.argv[2:]:
        big(Path(sys.argv[1]), int(size))
