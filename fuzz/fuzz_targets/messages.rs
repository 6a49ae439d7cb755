//! Any bytes as the destination's stdin, against the catalog in `fuzz/catalog.json` (source-mysql's
//! users and rides, plus a stream with every column type). See `destination_delta_lake::fuzzing`.
#![no_main]

use destination_delta_lake::fuzzing::Reader;
use libfuzzer_sys::fuzz_target;

thread_local! {
    /// The reader, its tables opened once (the folder is only needed while opening them; the
    /// checks never write). libFuzzer calls the target on one thread.
    static READER: Reader = {
        let folder = tempfile::tempdir().expect("a temporary folder for the tables");
        Reader::open(folder.path(), include_str!("../catalog.json")).expect("the fuzz catalog opens")
    };
}

fuzz_target!(|input: &[u8]| {
    READER.with(|reader| reader.check(input));
});
