//! What only a build with `--features cuda` has.

pub mod libs;
