//! Any text as a JSON value of every column type. See `destination_delta_lake::fuzzing`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        destination_delta_lake::fuzzing::check_value(text);
    }
});
