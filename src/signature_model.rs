//! The content model of an XML-DSig `Signature`, as far as this profile accepts it: the
//! verifier checks a Signature against it (`dsig::locate`), and the edXML reader uses its
//! element names to refuse anything else inside a Signature (a leaf: it depends on nothing).
//!
//! The Signature is checked against this model, never searched: each element may appear only
//! under its own parent, in XML-DSig's order, as often as the profile allows. That is what
//! closes signature wrapping: a `DigestValue` can only be the one inside the one `Reference` of
//! the one `SignedInfo` that `SignatureValue` covers; a second `SignedInfo`, a `Reference` in
//! `KeyInfo`, an `Object` holding a copy, or an element from another namespace is
//! `malformed_signature` before any digest is computed.
//!
//! Stricter than XML-DSig on purpose (docs/security.md): exactly one `Reference`; no `Object`
//! (nothing in this profile refers to one, so it can only hide content); no comments or
//! processing instructions inside the Signature; no attributes beyond the ones listed here.

/// The elements that may appear inside a Signature (and the Signature itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    Signature,
    SignedInfo,
    CanonicalizationMethod,
    SignatureMethod,
    Reference,
    Transforms,
    Transform,
    DigestMethod,
    DigestValue,
    SignatureValue,
    KeyInfo,
    KeyName,
    KeyValue,
    RsaKeyValue,
    Modulus,
    Exponent,
    EcKeyValue,
    NamedCurve,
    PublicKey,
    X509Data,
    X509IssuerSerial,
    X509IssuerName,
    X509SerialNumber,
    X509Ski,
    X509SubjectName,
    X509Certificate,
    X509Crl,
    InclusiveNamespaces,
}

/// Which namespace an element must be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsRule {
    /// The namespace of the Signature element itself (xmldsig, edXML or none).
    SameAsSignature,
    /// `InclusiveNamespaces`: the exclusive C14N namespace (or the Signature's).
    ExcC14n,
    /// XML-DSig 1.1 `ECKeyValue` and its children.
    Dsig11,
}

pub const EXC_C14N_NS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const DSIG11_NS: &str = "http://www.w3.org/2009/xmldsig11#";

/// One position in a content model: any of `elems`, between `min` and `max` times.
pub struct Slot {
    pub elems: &'static [Elem],
    pub min: u32,
    pub max: u32,
}

const fn one(e: &'static [Elem]) -> Slot {
    Slot {
        elems: e,
        min: 1,
        max: 1,
    }
}
const fn opt(e: &'static [Elem]) -> Slot {
    Slot {
        elems: e,
        min: 0,
        max: 1,
    }
}

/// At most this many certificates (a chain) and names in `KeyInfo`.
const KEYINFO_MAX: u32 = 16;

use Elem::*;

impl Elem {
    /// The element `local` names when it appears under `parent`, if the model allows it there.
    pub fn child_of(parent: Elem, local: &[u8]) -> Option<Elem> {
        let e = Elem::from_local(local)?;
        parent
            .model()
            .iter()
            .any(|s| s.elems.contains(&e))
            .then_some(e)
    }

    /// Whether `local` is the name of an element that may appear below a Signature.
    pub fn is_inner(local: &[u8]) -> bool {
        Elem::from_local(local).is_some_and(|e| e != Signature)
    }

    fn from_local(local: &[u8]) -> Option<Elem> {
        Some(match local {
            b"Signature" => Signature,
            b"SignedInfo" => SignedInfo,
            b"CanonicalizationMethod" => CanonicalizationMethod,
            b"SignatureMethod" => SignatureMethod,
            b"Reference" => Reference,
            b"Transforms" => Transforms,
            b"Transform" => Transform,
            b"DigestMethod" => DigestMethod,
            b"DigestValue" => DigestValue,
            b"SignatureValue" => SignatureValue,
            b"KeyInfo" => KeyInfo,
            b"KeyName" => KeyName,
            b"KeyValue" => KeyValue,
            b"RSAKeyValue" => RsaKeyValue,
            b"Modulus" => Modulus,
            b"Exponent" => Exponent,
            b"ECKeyValue" => EcKeyValue,
            b"NamedCurve" => NamedCurve,
            b"PublicKey" => PublicKey,
            b"X509Data" => X509Data,
            b"X509IssuerSerial" => X509IssuerSerial,
            b"X509IssuerName" => X509IssuerName,
            b"X509SerialNumber" => X509SerialNumber,
            b"X509SKI" => X509Ski,
            b"X509SubjectName" => X509SubjectName,
            b"X509Certificate" => X509Certificate,
            b"X509CRL" => X509Crl,
            b"InclusiveNamespaces" => InclusiveNamespaces,
            _ => return None,
        })
    }

    /// The children this element may have, in order.
    pub fn model(self) -> &'static [Slot] {
        const SIGNATURE: &[Slot] = &[one(&[SignedInfo]), one(&[SignatureValue]), opt(&[KeyInfo])];
        const SIGNED_INFO: &[Slot] = &[
            one(&[CanonicalizationMethod]),
            one(&[SignatureMethod]),
            one(&[Reference]),
        ];
        const C14N: &[Slot] = &[opt(&[InclusiveNamespaces])];
        const REFERENCE: &[Slot] = &[
            opt(&[Transforms]),
            one(&[DigestMethod]),
            one(&[DigestValue]),
        ];
        const TRANSFORMS: &[Slot] = &[Slot {
            elems: &[Transform],
            min: 1,
            max: 4,
        }];
        const KEY_INFO: &[Slot] = &[Slot {
            elems: &[KeyName, KeyValue, X509Data],
            min: 1,
            max: KEYINFO_MAX,
        }];
        const KEY_VALUE: &[Slot] = &[one(&[RsaKeyValue, EcKeyValue])];
        const RSA: &[Slot] = &[one(&[Modulus]), one(&[Exponent])];
        const EC: &[Slot] = &[one(&[NamedCurve]), one(&[PublicKey])];
        const X509_DATA: &[Slot] = &[Slot {
            elems: &[
                X509IssuerSerial,
                X509Ski,
                X509SubjectName,
                X509Certificate,
                X509Crl,
            ],
            min: 1,
            max: KEYINFO_MAX,
        }];
        const ISSUER_SERIAL: &[Slot] = &[one(&[X509IssuerName]), one(&[X509SerialNumber])];
        match self {
            Signature => SIGNATURE,
            SignedInfo => SIGNED_INFO,
            CanonicalizationMethod | Transform => C14N,
            Reference => REFERENCE,
            Transforms => TRANSFORMS,
            KeyInfo => KEY_INFO,
            KeyValue => KEY_VALUE,
            RsaKeyValue => RSA,
            EcKeyValue => EC,
            X509Data => X509_DATA,
            X509IssuerSerial => ISSUER_SERIAL,
            _ => &[],
        }
    }

    /// Whether the element holds text (every other element holds only whitespace).
    pub fn holds_text(self) -> bool {
        matches!(
            self,
            DigestValue
                | SignatureValue
                | KeyName
                | Modulus
                | Exponent
                | PublicKey
                | X509IssuerName
                | X509SerialNumber
                | X509Ski
                | X509SubjectName
                | X509Certificate
                | X509Crl
        )
    }

    /// The attributes the element may carry (namespace declarations aside).
    pub fn attributes(self) -> &'static [&'static [u8]] {
        match self {
            Signature | SignedInfo | SignatureValue | KeyInfo => &[b"Id"],
            CanonicalizationMethod | SignatureMethod | Transform | DigestMethod => &[b"Algorithm"],
            Reference => &[b"Id", b"URI", b"Type"],
            InclusiveNamespaces => &[b"PrefixList"],
            NamedCurve => &[b"URI"],
            _ => &[],
        }
    }

    pub fn ns_rule(self) -> NsRule {
        match self {
            InclusiveNamespaces => NsRule::ExcC14n,
            EcKeyValue | NamedCurve | PublicKey => NsRule::Dsig11,
            _ => NsRule::SameAsSignature,
        }
    }
}

/// Where a parent is in its content model while its children arrive.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cursor {
    slot: usize,
    count: u32,
}

impl Cursor {
    /// Accepts `child` as the next child of `parent`, or says why not.
    pub fn accept(&mut self, parent: Elem, child: Elem) -> Result<(), String> {
        let model = parent.model();
        while self.slot < model.len() {
            let s = &model[self.slot];
            if s.elems.contains(&child) {
                if self.count >= s.max {
                    return Err(format!(
                        "{parent:?} may hold {child:?} at most {} time(s)",
                        s.max
                    ));
                }
                self.count += 1;
                return Ok(());
            }
            if self.count < s.min {
                return Err(format!(
                    "{parent:?} must hold {:?} before {child:?}",
                    s.elems[0]
                ));
            }
            self.slot += 1;
            self.count = 0;
        }
        Err(format!("{child:?} is out of place in {parent:?}"))
    }

    /// Checks that every required child of `parent` has been seen.
    pub fn finish(&self, parent: Elem) -> Result<(), String> {
        let model = parent.model();
        for (i, s) in model.iter().enumerate().skip(self.slot) {
            let seen = if i == self.slot { self.count } else { 0 };
            if seen < s.min {
                return Err(format!("{parent:?} lacks {:?}", s.elems[0]));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(parent: Elem, children: &[Elem]) -> Result<(), String> {
        let mut c = Cursor::default();
        for &ch in children {
            c.accept(parent, ch)?;
        }
        c.finish(parent)
    }

    #[test]
    fn order_and_counts() {
        assert!(run(Signature, &[SignedInfo, SignatureValue, KeyInfo]).is_ok());
        assert!(run(Signature, &[SignedInfo, SignatureValue]).is_ok());
        assert!(run(Signature, &[SignatureValue, SignedInfo]).is_err());
        assert!(run(Signature, &[SignedInfo, SignedInfo, SignatureValue]).is_err());
        assert!(run(Signature, &[SignedInfo]).is_err());
        assert!(run(Signature, &[SignedInfo, SignatureValue, KeyInfo, KeyInfo]).is_err());
        assert!(
            run(
                SignedInfo,
                &[
                    CanonicalizationMethod,
                    SignatureMethod,
                    Reference,
                    Reference
                ]
            )
            .is_err()
        );
        assert!(run(Reference, &[DigestMethod, DigestValue]).is_ok());
        assert!(
            run(
                Reference,
                &[Transforms, DigestMethod, DigestValue, DigestValue]
            )
            .is_err()
        );
        assert!(run(KeyInfo, &[X509Data, KeyName, X509Data]).is_ok());
        assert!(run(KeyInfo, &[]).is_err());
        assert_eq!(Elem::child_of(KeyInfo, b"Reference"), None);
        assert_eq!(Elem::child_of(Signature, b"Object"), None);
        assert_eq!(Elem::child_of(Reference, b"DigestValue"), Some(DigestValue));
    }
}
