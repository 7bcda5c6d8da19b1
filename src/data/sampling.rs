//! Rebalancing the training split (`data.sampling`), drawn again every epoch: the images an
//! epoch trains on, before they are shuffled. As imbalanced-learn's `RandomOverSampler` and
//! `RandomUnderSampler` do it once, but per epoch, so that over many epochs every image of a
//! large class is seen (undersampling) and the repeats of a small class vary (oversampling).

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::seed::{self, Stream};

/// How the classes of the training split are rebalanced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Every image, plus images of the smaller classes drawn again (with replacement) until
    /// each class has as many as the largest.
    Oversample,
    /// As many images of each class as the smallest class has, drawn without replacement.
    Undersample,
}

/// Images per class in `train`.
fn by_class(train: &[usize], labels: &[usize]) -> Vec<Vec<usize>> {
    let classes = train.iter().map(|&i| labels[i] + 1).max().unwrap_or(0);
    let mut groups = vec![Vec::new(); classes];
    train.iter().for_each(|&i| groups[labels[i]].push(i));
    groups.retain(|g| !g.is_empty());
    groups
}

/// How many images every epoch of `sampling` trains on (the same each epoch).
pub fn epoch_len(train: &[usize], labels: &[usize], sampling: Option<Sampling>) -> usize {
    let groups = by_class(train, labels);
    let sizes = groups.iter().map(Vec::len);
    match sampling {
        None => train.len(),
        Some(Sampling::Oversample) => sizes.max().unwrap_or(0) * groups.len(),
        Some(Sampling::Undersample) => sizes.min().unwrap_or(0) * groups.len(),
    }
}

/// The images epoch `epoch` trains on, ascending (an image may appear more than once when
/// oversampling); the caller shuffles them. Without `sampling`, `train` itself.
pub fn epoch_images(
    train: &[usize],
    labels: &[usize],
    sampling: Option<Sampling>,
    seed: u64,
    epoch: usize,
) -> Vec<usize> {
    let Some(sampling) = sampling else { return train.to_vec() };
    let groups = by_class(train, labels);
    let target = epoch_len(train, labels, Some(sampling)) / groups.len().max(1);
    let mut out = Vec::with_capacity(target * groups.len());
    for group in &groups {
        let class = labels[group[0]] as u64;
        let mut rng = seed::rng(seed, Stream::Sampling, &[epoch as u64, class]);
        match sampling {
            Sampling::Oversample => {
                out.extend_from_slice(group);
                out.extend((group.len()..target).map(|_| group[rng.gen_range(0..group.len())]));
            }
            Sampling::Undersample => {
                let mut members = group.clone();
                let (picked, _) = members.partial_shuffle(&mut rng, target);
                out.extend_from_slice(picked);
            }
        }
    }
    out.sort_unstable();
    out
}

/// A key per drawn image that tells repeats apart, for the augmentation stream: an image's
/// first appearance keys by its index (as without sampling), its k-th repeat by
/// `index + k · images`, so repeated images are augmented differently.
pub fn augment_keys(drawn: &[usize], images: usize) -> Vec<usize> {
    let mut seen = std::collections::HashMap::new();
    drawn
        .iter()
        .map(|&i| {
            let k = seen.entry(i).or_insert(0usize);
            let key = i + *k * images;
            *k += 1;
            key
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0..10 class 0, 10..13 class 1, 13..15 class 2.
    fn labels() -> Vec<usize> {
        (0..15)
            .map(|i| {
                if i < 10 {
                    0
                } else if i < 13 {
                    1
                } else {
                    2
                }
            })
            .collect()
    }

    fn counts(drawn: &[usize], labels: &[usize]) -> Vec<usize> {
        let mut c = vec![0; 3];
        drawn.iter().for_each(|&i| c[labels[i]] += 1);
        c
    }

    #[test]
    fn oversampling_keeps_every_image_and_fills_each_class_to_the_largest() {
        let (labels, train): (Vec<usize>, Vec<usize>) = (labels(), (0..15).collect());
        let drawn = epoch_images(&train, &labels, Some(Sampling::Oversample), 7, 0);
        assert_eq!(counts(&drawn, &labels), [10, 10, 10]);
        assert_eq!(drawn.len(), epoch_len(&train, &labels, Some(Sampling::Oversample)));
        assert!(train.iter().all(|i| drawn.contains(i)), "every image at least once");
        assert_eq!(drawn, epoch_images(&train, &labels, Some(Sampling::Oversample), 7, 0), "seeded");
        assert_ne!(drawn, epoch_images(&train, &labels, Some(Sampling::Oversample), 7, 1), "drawn per epoch");
    }

    #[test]
    fn undersampling_takes_the_smallest_class_size_from_each_class_without_repeats() {
        let (labels, train): (Vec<usize>, Vec<usize>) = (labels(), (0..15).filter(|i| i % 7 != 3).collect());
        let drawn = epoch_images(&train, &labels, Some(Sampling::Undersample), 7, 0);
        assert_eq!(counts(&drawn, &labels), [2, 2, 2]);
        assert!(drawn.windows(2).all(|w| w[0] < w[1]), "no repeats, ascending");
        assert!(drawn.iter().all(|i| train.contains(i)), "training images only");
        let epochs: std::collections::BTreeSet<Vec<usize>> =
            (0..8).map(|e| epoch_images(&train, &labels, Some(Sampling::Undersample), 7, e)).collect();
        assert!(epochs.len() > 1, "another epoch, other images of the large class");
    }

    #[test]
    fn without_sampling_the_split_is_the_epoch_and_repeats_get_their_own_keys() {
        let (labels, train) = (labels(), vec![1, 4, 12]);
        assert_eq!(epoch_images(&train, &labels, None, 7, 3), train);
        assert_eq!(augment_keys(&[3, 5, 3, 3], 100), [3, 5, 103, 203]);
    }
}
