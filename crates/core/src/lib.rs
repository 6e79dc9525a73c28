//! codemill's domain: ids, the pipeline as a pure state machine, agent vocabulary, findings, cost, config. No IO.

pub mod agent;
pub mod assistant;
pub mod config;
pub mod cost;
pub mod findings;
pub mod ids;
pub mod knowledge;
pub mod learn;
pub mod merge_queue;
pub mod pipeline;
pub mod prompts;
pub mod refine;
pub mod review;
pub mod subtasks;
pub mod text;
pub mod triage;
pub mod untrusted;
