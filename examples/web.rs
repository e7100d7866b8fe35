//! Placeholder; the web site example is being written.
fn main() {}
