//! The `Store` facade's methods, one file per area; each delegates to that area's SQL in
//! `tables/` and keeps the transaction rules documented on `Store`.

mod artifacts;
mod assistant;
mod followers;
mod forge;
mod inbox;
mod jobs;
mod learning;
mod merge_queue;
mod metering;
mod queue;
mod stream;
mod tickets;
mod tokens;
