//! The PDF signature verifier on arbitrary bytes (seed it with the files
//! scripts/pdf_fixtures.py makes): it must return a verdict, never panic or hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let trust = lienthong::dsig::TrustStore::empty();
    let report = lienthong::pdfsig::verify(
        data,
        &trust,
        &lienthong::pdfsig::Limits::default(),
        &Default::default(),
        std::time::SystemTime::UNIX_EPOCH,
    );
    // Nothing chains to an empty trust store: no input can be two-layer.
    assert_ne!(report.verdict, lienthong::pdfsig::Verdict::TwoLayer);
});
