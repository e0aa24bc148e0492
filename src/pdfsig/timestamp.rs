//! RFC 3161 signature time stamps: a time stamp authority's token in the signer's unsigned
//! attributes (`signatureTimeStampToken`) says the signature value existed at `genTime`. When
//! present and trusted it is the time the signer's certificate must have been valid at (a
//! signature made while the certificate was valid stays valid after it expires); a token that
//! does not verify makes the signature invalid rather than being ignored.

use std::time::SystemTime;

use aws_lc_rs::digest;
use cms::signed_data::SignerInfo;
use der::asn1::OctetString;
use der::{Any, Decode, Encode, Tagged};

use super::cms_check::{Signer, attribute, digest_algorithm, invalid, signed_data};
use super::{Problem, Verdict};
use crate::dsig::TrustStore;

const SIGNATURE_TIME_STAMP: &str = "1.2.840.113549.1.9.16.2.14";
const TST_INFO: &str = "1.2.840.113549.1.9.16.1.4";

/// The time a trusted token stamps on `si`'s signature value; `None` without a token.
pub fn verified_time(si: &SignerInfo, trust: &TrustStore) -> Result<Option<SystemTime>, Problem> {
    let Some(token) = si
        .unsigned_attrs
        .as_ref()
        .and_then(|a| attribute(a, SIGNATURE_TIME_STAMP))
    else {
        return Ok(None);
    };
    let bad = |why: String| invalid(format!("the signature time stamp {why}"));
    let der = token
        .to_der()
        .map_err(|e| bad(format!("is unreadable: {e}")))?;
    let sd = signed_data(&der)?;
    if sd.encap_content_info.econtent_type.to_string() != TST_INFO {
        return Err(bad("holds no TSTInfo".into()));
    }
    let tst = sd
        .encap_content_info
        .econtent
        .as_ref()
        .and_then(|c| c.decode_as::<OctetString>().ok())
        .ok_or_else(|| bad("has no content".into()))?;
    let (imprint_alg, imprint, gen_time) = tst_info(tst.as_bytes()).map_err(bad)?;
    let (alg, _, _) = digest_algorithm(&imprint_alg)?;
    if digest::digest(alg, si.signature.as_bytes()).as_ref() != imprint.as_slice() {
        return Err(bad("is over another signature value".into()));
    }
    let tsa = Signer::of(&sd)?;
    let (tsa_alg, _, _) = digest_algorithm(&tsa.info.digest_alg.oid.to_string())?;
    tsa.verify(tsa_alg, &[tst.as_bytes()])
        .map_err(|p| bad(format!("does not verify: {}", p.message)))?;
    tsa.chain(trust, gen_time).map_err(|p| {
        Problem::new(
            if p.code == Verdict::Revoked {
                Verdict::Revoked
            } else {
                Verdict::ChainUntrusted
            },
            format!("the time stamp authority: {}", p.message),
        )
    })?;
    Ok(Some(gen_time))
}

/// (messageImprint hash algorithm OID, hashed message, genTime) of a DER TSTInfo.
fn tst_info(der: &[u8]) -> Result<(String, Vec<u8>, SystemTime), String> {
    let fields =
        Vec::<Any>::from_der(der).map_err(|e| format!("has an unreadable TSTInfo: {e}"))?;
    let field = |i: usize| fields.get(i).ok_or("has a short TSTInfo".to_owned());
    let imprint = field(2)?
        .decode_as::<Vec<Any>>()
        .map_err(|e| format!("has an unreadable messageImprint: {e}"))?;
    let alg = imprint
        .first()
        .and_then(|a| {
            a.decode_as::<x509_cert::spki::AlgorithmIdentifierOwned>()
                .ok()
        })
        .ok_or("has an unreadable hash algorithm")?;
    let hashed = imprint
        .get(1)
        .and_then(|h| h.decode_as::<OctetString>().ok())
        .ok_or("has an unreadable hashed message")?;
    let time = field(4)?;
    if time.tag() != der::Tag::GeneralizedTime {
        return Err("has a genTime that is not a GeneralizedTime".into());
    }
    let time = generalized_time(time.value()).ok_or("has an unreadable genTime")?;
    Ok((alg.oid.to_string(), hashed.as_bytes().to_vec(), time))
}

/// `YYYYMMDDHHMMSS[.fraction]Z`: RFC 3161 allows the fraction DER's strict GeneralizedTime
/// does not (time stamp authorities use it); the fraction is dropped.
fn generalized_time(v: &[u8]) -> Option<SystemTime> {
    let v = v.strip_suffix(b"Z")?;
    let whole = v.split(|&b| b == b'.').next()?;
    if whole.len() != 14 || !whole.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| std::str::from_utf8(&whole[r]).ok()?.parse::<u32>().ok();
    let month = time::Month::try_from(n(4..6)? as u8).ok()?;
    let date = time::Date::from_calendar_date(n(0..4)? as i32, month, n(6..8)? as u8).ok()?;
    let t = time::Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    let secs = date.with_time(t).assume_utc().unix_timestamp();
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::generalized_time;
    use std::time::{Duration, SystemTime};

    #[test]
    fn generalized_times_with_and_without_fractions() {
        let at = |s: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(generalized_time(b"20261128171258Z"), at(1_795_885_978));
        assert_eq!(
            generalized_time(b"20261128171258.123456Z"),
            at(1_795_885_978)
        );
        for bad in [
            &b"20261128171258"[..],
            b"2026112817125Z",
            b"20261328171258Z",
            b"2026x128171258Z",
            b"",
        ] {
            assert_eq!(
                generalized_time(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
