//! Replays the fuzz targets' committed corpus (`fuzz/corpus/`) through the same checks, without
//! the fuzzer's instrumentation: every input a fuzz run kept, and every crash it found once
//! (saved there as a regression), stays checked by `cargo test`.

use std::path::{Path, PathBuf};

use destination_delta_lake::fuzzing::{Reader, check_value};

fn corpus(target: &str) -> Vec<PathBuf> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the {target} corpus in {} is nearly empty", folder.display());
    files
}

#[test]
fn the_messages_corpus_keeps_its_promises() {
    let lake = tempfile::tempdir().expect("a temporary lake");
    let catalog = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/catalog.json")).expect("fuzz/catalog.json");
    let reader = Reader::open(lake.path(), &catalog).expect("the fuzz catalog opens");
    // The committed inputs that must be refused; every other one is a valid sync and must pass.
    let refused = ["array_message", "invalid_utf8", "not_json", "record_without_data"];
    for file in corpus("messages") {
        let input = std::fs::read(&file).expect("a corpus file");
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        // Read at the size its first byte sets, then one byte per read: the splitter must not care.
        let accepted = reader.check(&input);
        if let Some((_, rest)) = input.split_first() {
            assert_eq!(reader.check(&[&[0u8][..], rest].concat()), accepted, "{name}: one byte per read");
        }
        if refused.contains(&name.as_str()) {
            assert!(!accepted, "{name} must be refused");
        } else if !name.starts_with("crash-") && !name.starts_with("found-") {
            assert!(accepted, "{name} is a valid sync but was refused");
        }
    }
}

#[test]
fn the_values_corpus_keeps_its_promises() {
    for file in corpus("values") {
        let input = std::fs::read(&file).expect("a corpus file");
        if let Ok(text) = std::str::from_utf8(&input) {
            check_value(text);
        }
    }
}
