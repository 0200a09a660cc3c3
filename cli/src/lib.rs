//! What `ta-persist` and the benchmark binary share: the demo's agent
//! workload and the tables and latency summaries they print.
#![warn(missing_docs, missing_debug_implementations)]

pub mod report;
pub mod workload;
