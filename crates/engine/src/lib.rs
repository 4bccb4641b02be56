//! Elastic's Microsoft 365 detection rules, run offline over audit records, with the
//! mailbox audit bypass investigation as the deepest analysis.
//!
//! Place in the flow: between `ualhunt-input` (bytes to blocks and records) and
//! `ualhunt-report` (a [`Report`] to every format). Inside, the data flows down:
//!
//! [`rule`] (published TOML rules loaded, their KQL compiled by `ualhunt-query` over
//! [`field::Field`]) → [`prefilter`] (a byte search for the rules' literals) → [`scan`]
//! (a [`Matcher`](scan::Matcher) selects records, a pass over the inputs feeds each
//! candidate, parsed into the ECS view of [`record`], to a [`Sink`](scan::Sink)) →
//! [`findings`] (mergeable partial results, [`evidence`] read per match) and
//! [`coverage`] (what the archive covers) → [`analysis`] (alerting, the bypass
//! investigation, actors) → [`Report`].
//!
//! The public surface is the [`stages`] of a run ([`discover`],
//! [`first_pass`], [`plan_context`], [`context_pass`], [`finish`], or [`run`] for all
//! of them); [`shard`] splits the passes of one run over machines with the same stages
//! and merges their partial results. Nothing here prints: [`Progress`](ualhunt_input::Progress)
//! is only counted, and [`alloc`] only measures.
#![deny(missing_docs)]

pub mod alloc;
pub mod allow;
pub mod analysis;
pub mod config;
pub mod coverage;
pub mod enrich;
pub mod error;
pub mod evidence;
pub mod field;
pub mod findings;
pub mod index;
pub mod ondemand;
pub mod prefilter;
pub mod record;
pub mod report;
pub mod rule;
pub mod scan;
pub mod shard;
pub mod stages;
pub mod warnings;

pub use config::Config;
pub use report::Report;
pub use stages::{
    ContextPlan, Finish, Found, context_pass, context_pass_within, discover, finish, first_matcher,
    first_pass, plan_context, run,
};
