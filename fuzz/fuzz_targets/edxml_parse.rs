//! The edXML reader on arbitrary bytes: never a panic, and within the limits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = lienthong::edxml::parse(data);
});
