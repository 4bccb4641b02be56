//! Query languages over records that can answer field names.
//!
//! Place in the flow: the first room of ualhunt and the only one that knows no audit
//! record and no file. A rule's query text is parsed here once into a query over a
//! field type the caller chooses (its [`Field`]: how a name resolves, what type its
//! values have, how a value is spelled in a record's bytes); the engine then evaluates
//! it against each candidate record through [`Fields`], and asks it which literal
//! strings every matching record must hold, for its byte prefilter.
//!
//! Languages: [`kql`], the Kibana Query Language, parsed as Kibana's grammar reads it
//! and evaluated as Elasticsearch answers the query Kibana builds from it. No other
//! Rust crate evaluates KQL. [`eql`], Elasticsearch's Event Query Language: event
//! queries evaluated per record, and sequences, whose step matches [`sequence`] replays
//! in time order; [`temporal`] replays Sigma's temporal correlations the same way.
//! [`esql`]: the ES|QL subset Elastic's rules use. [`sigma`]: Sigma rules' detections, read
//! from YAML.
//!
//! ```
//! use ualhunt_query::{Fields, Named, kql::Query};
//!
//! struct Event<'a>(&'a [(&'a str, &'a str)]);
//!
//! impl Fields<Named> for Event<'_> {
//!     fn any_value(&self, field: &Named, pred: &mut dyn FnMut(&str) -> bool) -> bool {
//!         self.0.iter().any(|(k, v)| *k == field.name() && pred(v))
//!     }
//! }
//!
//! let query = Query::<Named>::parse("event.action:(New-* or Set-*) and not user.id:admin")?;
//! assert!(query.matches(&Event(&[("event.action", "New-InboxRule"), ("user.id", "eve")])));
//! assert!(!query.matches(&Event(&[("event.action", "New-InboxRule"), ("user.id", "admin")])));
//! assert_eq!(query.required_literals(), Some(vec!["New-".to_string(), "Set-".to_string()]));
//! # Ok::<(), ualhunt_query::kql::ParseError>(())
//! ```
#![deny(missing_docs)]

pub mod correlation;
pub mod eql;
pub mod esql;
mod field;
pub mod kql;
mod literal;
pub mod sequence;
pub mod sigma;
pub mod temporal;
pub mod time;

pub use field::{Field, Fields, Named, Spelling, ValueType};
pub use literal::{Branches, Literal, MAX_BRANCHES};
