//! Analyses: what the merged findings of a run mean.
//!
//! Place in the flow: after the scan. Each rule names its analyses in its rule file;
//! they read the merged [`Harvest`](crate::findings::Harvest) (rule matches and context
//! selections, in input order), the coverage, and, for the bypass investigation, the
//! second pass's [`context::Activity`]. Their partial states are those mergeable,
//! serializable scan states; the analyses themselves are pure functions of them, so a
//! sharded run that merges the states gets the same answers. The time window
//! (`--since`/`--until`) is applied here, after the analysis, never in the scan: an
//! enable before the window still opens a period a disable inside it closes.
//!
//! - [`alerting`]: which matches of a `new_terms`, `threshold` or `esql` rule alert;
//! - [`esql`]: an ES|QL rule's runs replayed over the archive;
//! - [`sequence`]: an EQL sequence rule's step matches replayed into completed
//!   sequences;
//! - [`actors`]: findings grouped by actor (every rule);
//! - [`bypass`]: the mailbox audit bypass investigation (changes, periods, failed
//!   attempts, the bypassed accounts' blind spot, the actors' context);
//! - [`context`]: the second pass that gathers that blind spot and context.
//!
//! What the archive covers, and whether "no findings" means anything, is
//! [`coverage::verdict`](crate::coverage::verdict).

pub mod actors;
pub mod alerting;
pub mod bypass;
pub mod context;
pub mod esql;
pub mod sequence;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::allow::Allowlist;
use crate::findings::Finding;

/// A finding as the report shows it: with what the analyses made of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The finding.
    pub finding: Finding,
    /// For the bypass rule: what the change did.
    pub change: Option<Change>,
    /// The allowlist entry (index) that names its actor or target, if any.
    pub allowed: Option<usize>,
}

impl Evidence {
    /// A finding with what the analyses made of it: its `change` (a bypass rule's
    /// match) and its allowlist entry, the one naming its actor, else its `target`.
    /// The one place this is decided: every output shows what this says.
    pub fn of(
        finding: Finding,
        change: Option<Change>,
        target: Option<&str>,
        allow: &Allowlist,
    ) -> Evidence {
        let allowed = finding
            .actor
            .as_deref()
            .and_then(|a| allow.find(a))
            .or_else(|| target.and_then(|t| allow.find(t)));
        Evidence {
            finding,
            change,
            allowed,
        }
    }
}

/// What a `Set-MailboxAuditBypassAssociation` did, from its `AuditBypassEnabled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// `-AuditBypassEnabled $true`.
    Enable,
    /// `-AuditBypassEnabled $false`.
    Disable,
    /// No readable `AuditBypassEnabled`.
    Unknown,
}

impl Change {
    /// Its name in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Change::Enable => "enable",
            Change::Disable => "disable",
            Change::Unknown => "unknown",
        }
    }
}

/// The `--since`/`--until` window: `since <= t < until`, either bound optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Inclusive start.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive end.
    pub until: Option<DateTime<Utc>>,
}

impl Window {
    /// Whether the window is unbounded.
    pub fn is_open(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// Whether a time is inside; a missing time is inside only an unbounded window.
    pub fn contains(&self, t: Option<DateTime<Utc>>) -> bool {
        if self.is_open() {
            return true;
        }
        t.is_some_and(|t| self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u))
    }

    /// Whether the span `[start, end)` (a missing start: from the beginning; a missing
    /// end: open) meets the window.
    pub fn meets(&self, start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> bool {
        let before_until = match (start, self.until) {
            (Some(s), Some(u)) => s < u,
            _ => true,
        };
        let after_since = match (end, self.since) {
            (Some(e), Some(s)) => e >= s,
            _ => true,
        };
        before_until && after_since
    }
}
