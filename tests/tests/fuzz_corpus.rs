//! The fuzz targets' corpora (`tests/fuzz/corpus/<target>/`) replayed as regression tests on
//! stable: every input that ever mattered to a fuzzer must still pass its check. Seeds for the
//! ABI target are generated here from the vote fixtures.

use eb_tests::{fixture, fuzzing, workspace};
use policy_sdk::fixture as fixtures;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = workspace().join("tests/fuzz/corpus").join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.expect("entry").path()).expect("readable"))
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn rpc_corpus() {
    let inputs = corpus("rpc");
    assert!(inputs.len() >= 5);
    inputs.iter().for_each(|i| fuzzing::rpc(i));
}

#[test]
fn node_spec_corpus() {
    let inputs = corpus("node_spec");
    assert!(inputs.len() >= 5);
    inputs.iter().for_each(|i| fuzzing::node_spec(i));
}

#[test]
fn abi_corpus_and_every_fixture_ballot() {
    let inputs = corpus("abi");
    inputs.iter().for_each(|i| fuzzing::abi(i));
    let cases = fixtures::load(&[fixture("votes")]).expect("fixtures");
    for case in cases {
        let bytes = case.ballot().expect("valid").to_bytes().expect("encodes");
        fuzzing::abi(&bytes);
        for cut in 0..bytes.len() {
            fuzzing::abi(&bytes[..cut]);
        }
    }
}
