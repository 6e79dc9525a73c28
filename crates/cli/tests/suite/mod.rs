//! Test modules and the shared harness.

mod bad_input;
mod crash;
mod demo;
mod harness;
mod pipeline;
