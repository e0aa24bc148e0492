//! Full verification (Signature location against the content model, canonicalization, digest,
//! signature, chain) on arbitrary packets, with the hub's order: read first, then verify.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lienthong::dsig::TrustStore;

fn trust() -> &'static TrustStore {
    static T: OnceLock<TrustStore> = OnceLock::new();
    T.get_or_init(TrustStore::empty)
}

fuzz_target!(|data: &[u8]| {
    if lienthong::edxml::parse(data).is_err() {
        // The hub verifies only packets that read; still, verification must not panic on
        // the others either (`lienthong verify` reads first too).
        return;
    }
    let _ = lienthong::dsig::verify(data, trust(), std::time::SystemTime::now());
});
