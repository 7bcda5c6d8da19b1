//! All randomness of a run, derived from the one `experiment.seed` of the config.
//!
//! Each use of randomness has its own named stream, so adding or changing one (say, a new
//! augmentation) never shifts another (the split, the initial weights). Streams that repeat
//! per epoch or per sample take those numbers as extra keys, so results do not depend on
//! thread count or on the order in which work is scheduled. Never use `thread_rng`.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The named random streams of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Train/validation split of the file list.
    Split = 1,
    /// Order of the training samples, keyed by epoch.
    Shuffle = 2,
    /// Data augmentation, keyed by epoch and sample.
    Augment = 3,
    /// Initial weights.
    Init = 4,
    /// Dropout masks, keyed by epoch and step.
    Dropout = 5,
    /// Random-search values of a sweep, keyed by draw and key.
    Sweep = 6,
    /// Which training images an epoch over- or undersamples, keyed by epoch and class.
    Sampling = 7,
    /// Assignment of images to cross-validation folds, keyed by class.
    Folds = 8,
    /// Random inputs of `runner gpu-check`'s comparisons, keyed by case.
    DeviceCheck = 9,
}

/// A generator for `stream` under `seed`, further keyed by `keys` (epoch, sample index, ...).
pub fn rng(seed: u64, stream: Stream, keys: &[u64]) -> ChaCha8Rng {
    let key = keys.iter().fold(splitmix64(seed), |acc, &k| splitmix64(acc ^ splitmix64(k)));
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    rng.set_stream(stream as u64);
    rng
}

/// SplitMix64 finaliser: a bijective mix so that nearby keys give unrelated seeds.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
