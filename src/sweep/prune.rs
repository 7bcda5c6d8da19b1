//! Pruning: a trial stops at an epoch boundary when the other trials do better at the same
//! epoch, so the sweep's time goes to the promising ones. The trial process decides for
//! itself after each epoch, from the history files of the other trials in the sweep folder,
//! so pruning works the same for local jobs and Slurm tasks and needs no coordinator.
//!
//! Both rules compare best-so-far values: a trial's best metric up to epoch e against the
//! others' best up to the same epoch, counting only trials that have reached it. With trials
//! run one at a time (`--jobs 1`) the decisions are reproducible; with trials in parallel
//! they depend on how far the others have got when a trial finishes an epoch.

use std::path::Path;

use super::state::Definition;
use crate::config::sweep::Prune;
use crate::train::{monitor, History};

/// The judge of the trial `name` of the sweep in `dir`, for the pipeline to ask after each
/// epoch; none when the sweep does not prune.
pub fn judge(dir: &Path, definition: &Definition, name: &str) -> Option<impl Fn(&History) -> Option<String> + Sync> {
    let rule = definition.prune?;
    let (metric, maximize) = (definition.metric.clone(), definition.maximize);
    let others: Vec<std::path::PathBuf> =
        definition.trials.iter().filter(|t| t.name != name).map(|t| dir.join(&t.name).join("history.csv")).collect();
    Some(move |history: &History| {
        let own: Vec<f64> = history.epochs.iter().map(|r| monitor::value(r, &metric).unwrap_or(f64::NAN)).collect();
        let others: Vec<Vec<f64>> = others.iter().filter_map(|path| column(path, &metric)).collect();
        verdict(rule, &metric, maximize, &own, &others)
    })
}

/// Column `name` of a history file, one value per epoch (none while the file is absent).
fn column(path: &Path, name: &str) -> Option<Vec<f64>> {
    crate::train::history::Table::read(path).ok()?.column(name)
}

/// The best value of each prefix of `values` (a value that is not finite never counts).
fn best_so_far(values: &[f64], maximize: bool) -> Vec<f64> {
    let worst = if maximize { f64::NEG_INFINITY } else { f64::INFINITY };
    let better = |a: f64, b: f64| if maximize { a > b } else { a < b };
    values
        .iter()
        .scan(worst, |best, &v| {
            if v.is_finite() && better(v, *best) {
                *best = v;
            }
            Some(*best)
        })
        .collect()
}

/// Whether a trial whose metric so far is `own` (one value per finished epoch) stops after
/// its last epoch, given the others' histories; why, when it does.
pub fn verdict(rule: Prune, metric: &str, maximize: bool, own: &[f64], others: &[Vec<f64>]) -> Option<String> {
    let epochs = own.len();
    let e = epochs.checked_sub(1)?;
    let mine = best_so_far(own, maximize)[e];
    let theirs: Vec<f64> = others.iter().filter(|h| h.len() >= epochs).map(|h| best_so_far(h, maximize)[e]).collect();
    let better = |a: f64, b: f64| if maximize { a > b } else { a < b };
    match rule {
        Prune::Median { after_epochs, min_trials } => {
            if epochs < after_epochs || theirs.len() < min_trials {
                return None;
            }
            let mut sorted = theirs.clone();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
            better(median, mine).then(|| {
                format!(
                    "after epoch {epochs} its best {metric} ({}) is worse than the median ({median:.4}) of the {n} \
                     other trials at that epoch",
                    shown(mine)
                )
            })
        }
        Prune::Halving { after_epochs, reduction_factor } => {
            if !is_rung(epochs, after_epochs, reduction_factor) {
                return None;
            }
            let at_rung = theirs.len() + 1;
            let keep = (at_rung / reduction_factor).max(1);
            let ahead = theirs.iter().filter(|&&t| better(t, mine)).count();
            (ahead >= keep).then(|| {
                format!(
                    "at the rung after epoch {epochs}, {ahead} of the {at_rung} trials there have a better {metric} \
                     than its {}; only the best {keep} go on",
                    shown(mine)
                )
            })
        }
    }
}

/// Whether `epochs` is `first · factor^k` for some k.
fn is_rung(epochs: usize, first: usize, factor: usize) -> bool {
    let mut rung = first;
    while rung < epochs {
        rung = rung.saturating_mul(factor);
    }
    rung == epochs
}

fn shown(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.4}")
    } else {
        "none yet".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEDIAN: Prune = Prune::Median { after_epochs: 2, min_trials: 2 };
    const HALVING: Prune = Prune::Halving { after_epochs: 1, reduction_factor: 2 };

    #[test]
    fn median_prunes_a_trial_behind_the_median_of_the_others_at_the_same_epoch() {
        let others = vec![vec![0.5, 0.7, 0.8], vec![0.6, 0.8, 0.85], vec![0.4]];
        // After one epoch nobody is judged (after_epochs = 2).
        assert_eq!(verdict(MEDIAN, "val_accuracy", true, &[0.1], &others), None);
        // After two: the others' best so far are 0.7 and 0.8 (the third has not got there).
        let why = verdict(MEDIAN, "val_accuracy", true, &[0.1, 0.6], &others).unwrap();
        assert!(why.contains("median (0.7500) of the 2 other trials"), "{why}");
        assert_eq!(verdict(MEDIAN, "val_accuracy", true, &[0.1, 0.76], &others), None);
        // Its best so far counts, not its last epoch.
        assert_eq!(verdict(MEDIAN, "val_accuracy", true, &[0.9, 0.2], &others), None);
    }

    #[test]
    fn median_minimises_losses_and_waits_for_enough_trials() {
        let others = vec![vec![1.0, 0.5], vec![1.0, 0.7]];
        assert!(verdict(MEDIAN, "val_loss", false, &[1.0, 0.9], &others).is_some());
        assert_eq!(verdict(MEDIAN, "val_loss", false, &[1.0, 0.55], &others), None);
        let alone = vec![vec![1.0, 0.1]];
        assert_eq!(verdict(MEDIAN, "val_loss", false, &[1.0, 0.9], &alone), None, "one other is not a median");
    }

    #[test]
    fn a_trial_that_never_had_a_finite_metric_is_behind_everyone() {
        let others = vec![vec![0.5, 0.5], vec![0.6, 0.6]];
        assert!(verdict(MEDIAN, "val_accuracy", true, &[f64::NAN, f64::NAN], &others).is_some());
    }

    #[test]
    fn halving_keeps_the_best_part_at_each_rung_only() {
        assert!(is_rung(1, 1, 2) && is_rung(2, 1, 2) && is_rung(4, 1, 2) && !is_rung(3, 1, 2));
        assert!(is_rung(3, 3, 3) && is_rung(9, 3, 3) && !is_rung(1, 3, 3) && !is_rung(6, 3, 3));
        // Alone at a rung, a trial goes on.
        assert_eq!(verdict(HALVING, "val_accuracy", true, &[0.1], &[]), None);
        // Four at the rung after epoch 2 (this one and three others): the best two go on.
        let others = vec![vec![0.5, 0.9], vec![0.5, 0.8], vec![0.5, 0.3]];
        assert_eq!(verdict(HALVING, "val_accuracy", true, &[0.5, 0.85], &others), None);
        let why = verdict(HALVING, "val_accuracy", true, &[0.5, 0.7], &others).unwrap();
        assert!(why.contains("2 of the 4 trials there have a better val_accuracy"), "{why}");
        // Epoch 3 is no rung: nobody is judged there.
        let others3 = vec![vec![0.9, 0.9, 0.9]];
        assert_eq!(verdict(HALVING, "val_accuracy", true, &[0.1, 0.1, 0.1], &others3), None);
    }
}
