//! Test modules and the shared harness.

mod bad_input;
mod broken_pipe;
mod browser;
mod claude;
mod clis;
mod crash;
mod demo;
mod doctor;
mod harness;
mod jira_linear;
mod knowledge;
mod knowledge_agents;
mod knowledge_quality;
mod lifecycle;
mod mcp;
mod merge_queue;
mod mixed;
mod multinode;
mod one_path;
mod outside;
mod pipeline;
mod review;
mod security;
mod serve;
mod service_crash;
mod worker;
