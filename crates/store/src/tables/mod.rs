//! Each area's SQL, written once over the dialect layer (`crate::sql`) and run on SQLite or
//! PostgreSQL alike. One module per area; the `Store` facade in the crate root documents and
//! calls them.

mod artifacts;
mod assistant;
mod events;
mod inbox;
pub(crate) mod ingest;
mod journal;
mod knowledge;
mod learning;
mod merge_queue;
mod metering;
mod notify;
mod queue;
mod sessions;
mod sign_ins;
mod tickets;
mod tokens;
mod users;

pub(crate) use ingest::Ingest;
pub use ingest::IngestCounts;
