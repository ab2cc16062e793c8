//! wip
#[allow(dead_code)]
mod tree;
