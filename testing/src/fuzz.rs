//! The harness of the proptest fuzz targets: a fixed, reportable seed per target, the
//! case count from `PROPTEST_CASES`, and byte-level mutations of valid inputs.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// Cases per target: `PROPTEST_CASES`, default 10 000.
pub fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(10_000)
}

/// The seed of target number `target`: `base` (or `FUZZ_SEED`, 64 hex digits, if set)
/// with `target` added to its last byte.
pub fn seed(base: [u8; 32], target: u8) -> [u8; 32] {
    let mut seed = base;
    if let Ok(hex) = std::env::var("FUZZ_SEED") {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        let len = bytes.len().min(32);
        seed[..len].copy_from_slice(&bytes[..len]);
    }
    seed[31] = seed[31].wrapping_add(target);
    seed
}

/// Runs `test` on [`cases`] values of `strategy` from the seed of `target`; panics with
/// the seed and the smallest failing input on failure, and reports the time taken.
pub fn run<S: Strategy>(
    name: &str,
    base: [u8; 32],
    target: u8,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let seed = seed(base, target);
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let started = std::time::Instant::now();
    let result = runner.run(&strategy, test);
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    match result {
        Ok(()) => eprintln!(
            "fuzz {name}: {} cases in {:.1?} (seed {hex})",
            cases(),
            started.elapsed()
        ),
        Err(TestError::Fail(why, input)) => {
            let mut shown = format!("{input:?}");
            shown.truncate(8_000);
            panic!("fuzz {name} failed (seed {hex}): {why}\nsmallest input: {shown}");
        }
        Err(TestError::Abort(why)) => panic!("fuzz {name} aborted (seed {hex}): {why}"),
    }
}

/// One edit of a valid value.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Flip one bit of one byte.
    Flip(Index, u8),
    /// Insert one byte.
    Insert(Index, u8),
    /// Delete one byte.
    Delete(Index),
    /// Cut the value short.
    Truncate(Index),
    /// Replace one byte with a run of copies of another.
    Smear(Index, u8, u16),
    /// Put arbitrary bytes in the middle.
    Splice(Index, Vec<u8>),
}

/// One edit.
pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Edit::Flip(i, bit)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => any::<Index>().prop_map(Edit::Delete),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), any::<u8>(), 1u16..5_000)
            .prop_map(|(i, b, n)| Edit::Smear(i, b, n)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Edit::Splice(i, v)),
    ]
}

/// One to three edits.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..4)
}

/// `base` with `edits` applied.
pub fn mutate(base: &[u8], edits: &[Edit]) -> Vec<u8> {
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len) };
    let mut v = base.to_vec();
    for e in edits {
        match e {
            Edit::Flip(i, bit) if !v.is_empty() => {
                let at = at(i, v.len());
                v[at] ^= 1 << bit;
            }
            Edit::Insert(i, b) => {
                let at = at(i, v.len() + 1);
                v.insert(at, *b);
            }
            Edit::Delete(i) if !v.is_empty() => {
                let at = at(i, v.len());
                v.remove(at);
            }
            Edit::Truncate(i) => v.truncate(at(i, v.len())),
            Edit::Smear(i, b, n) if !v.is_empty() => {
                let at = at(i, v.len());
                v.splice(at..=at, std::iter::repeat_n(*b, usize::from(*n)));
            }
            Edit::Splice(i, bytes) => {
                let at = at(i, v.len() + 1);
                v.splice(at..at, bytes.iter().copied());
            }
            _ => {}
        }
    }
    v
}
