//! The CUDA side of our ops, in builds with `--features cuda` (the module is declared only
//! then).

pub mod libs;
