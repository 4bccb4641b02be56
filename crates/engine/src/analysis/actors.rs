//! The `by_actor` analysis: a rule's findings grouped by the actor who did it.
//!
//! Orders (documented in the README): actors by actor id (byte order; a missing actor
//! sorts first); evidence by time (a missing time first), then input order (input,
//! line); targets by rule (rule order), then identity; source IPs as addresses (IPv4
//! before IPv6, numerically; text that is no address last, by text).
//!
//! A target belongs to one rule: what that rule's `target` evidence item names (the
//! bypassed mailbox for the bypass rule, the object or assignee a published rule's
//! cmdlet acted on), counted per rule and never merged across rules; only a rule with a
//! flag item gives its targets a state.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::findings::{Finding, Text, Value};
use crate::rule::Rule;

use super::Evidence;

/// The findings of one rule for one target of one actor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Index of the rule whose matches name it.
    pub rule: u16,
    /// The rule's `target` evidence item (a mailbox for the bypass rule); `None` when
    /// the record names none or the rule has no such item.
    pub identity: Option<Text>,
    /// The rule's matched events on this target.
    pub events: u64,
    /// The rule's first flag item as the last event (in evidence order) set it; always
    /// `None` for a rule without a flag item (see [`Target::has_state`]).
    pub flag: Option<bool>,
}

impl Target {
    /// Whether the target has a state at all: its rule has a flag item (the bypass
    /// rule's `AuditBypassEnabled`). For other rules `flag` means nothing.
    pub fn has_state(&self, rules: &[crate::rule::Items]) -> bool {
        rules
            .get(usize::from(self.rule))
            .is_some_and(|items| items.flag.is_some())
    }
}

/// Everything one actor did that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorFindings {
    /// `user.id`; `None` when records name no actor.
    pub actor: Option<Text>,
    /// First event time.
    pub first_seen: Option<DateTime<Utc>>,
    /// Last event time.
    pub last_seen: Option<DateTime<Utc>>,
    /// Per-target summary, by identity.
    pub targets: Vec<Target>,
    /// Distinct source IPs, in address order.
    pub source_ips: Vec<Text>,
    /// Distinct `user_type` evidence values (`Admin`, `System`, …), sorted.
    pub user_types: Vec<Text>,
    /// The matched events, in evidence order.
    pub evidence: Vec<Evidence>,
}

/// One rule's findings in a report: how many events, by how many actors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleSummary {
    /// Index of the rule.
    pub rule: u16,
    /// Matched events reported (inside the window).
    pub events: u64,
    /// Of them, events an allowlist entry covers.
    pub allowed: u64,
    /// Distinct actors.
    pub actors: u64,
    /// First event time.
    pub first_seen: Option<DateTime<Utc>>,
    /// Last event time.
    pub last_seen: Option<DateTime<Utc>>,
}

/// Per rule (in rule order, every rule included): its events and actors.
pub fn per_rule(actors: &[ActorFindings], rules: usize) -> Vec<RuleSummary> {
    let mut out: Vec<RuleSummary> = (0..rules)
        .map(|r| RuleSummary {
            rule: r as u16,
            ..RuleSummary::default()
        })
        .collect();
    let mut seen: Vec<bool> = vec![false; rules];
    for a in actors {
        seen.iter_mut().for_each(|s| *s = false);
        for e in &a.evidence {
            let r = usize::from(e.finding.rule);
            let Some(sum) = out.get_mut(r) else { continue };
            sum.events += 1;
            sum.allowed += u64::from(e.allowed.is_some());
            if !seen[r] {
                seen[r] = true;
                sum.actors += 1;
            }
            if let Some(t) = e.finding.timestamp {
                sum.first_seen = Some(sum.first_seen.map_or(t, |f| f.min(t)));
                sum.last_seen = Some(sum.last_seen.map_or(t, |l| l.max(t)));
            }
        }
    }
    out
}

/// The order hunters read rules in: severity (critical first), then risk score.
pub fn severity_rank(severity: &str) -> u8 {
    match severity.to_ascii_lowercase().as_str() {
        "critical" => 0,
        "high" => 1,
        "medium" => 2,
        "low" => 3,
        _ => 4,
    }
}

/// Groups evidence by actor, in the documented total orders. Strings are compared only
/// to find an item's group and once per distinct actor, target and IP, never inside the
/// evidence sort (the worst case is hundreds of thousands of events). Each item is
/// moved once, from `evidence` (made as it is consumed) to its actor's list.
pub fn group(evidence: impl IntoIterator<Item = Evidence>, rules: &[Rule]) -> Vec<ActorFindings> {
    let mut by_actor: FxHashMap<Option<Text>, Vec<Evidence>> = FxHashMap::default();
    for e in evidence {
        match by_actor.get_mut(&e.finding.actor) {
            Some(list) => list.push(e),
            None => {
                by_actor.insert(e.finding.actor.clone(), vec![e]);
            }
        }
    }
    let mut groups: Vec<(Option<Text>, Vec<Evidence>)> = by_actor.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    groups
        .into_par_iter()
        .map(|(actor, mut evidence)| {
            // (time, at, rule, why) is unique per finding, so this order is total.
            evidence.sort_unstable_by_key(|e| e.finding.order_key());
            let times = || evidence.iter().filter_map(|e| e.finding.timestamp);
            ActorFindings {
                first_seen: times().min(),
                last_seen: times().max(),
                targets: targets(&evidence, rules),
                source_ips: sort_ips(evidence.iter().filter_map(|e| e.finding.source_ip.as_ref())),
                user_types: user_types(&evidence, rules),
                actor,
                evidence,
            }
        })
        .collect()
}

/// A target's key while counting: its rule and identity.
type TargetKey<'a> = (u16, Option<&'a Text>);

/// Per-rule, per-target counts and last flag (evidence in evidence order).
fn targets(evidence: &[Evidence], rules: &[Rule]) -> Vec<Target> {
    let mut targets: FxHashMap<TargetKey, (u64, Option<bool>)> = FxHashMap::default();
    for e in evidence {
        let f = &e.finding;
        let rule = &rules[usize::from(f.rule)];
        let identity = match f.field(rule.items.target) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        };
        let t = targets.entry((f.rule, identity)).or_default();
        t.0 += 1;
        if let Some(flag) = first_flag(f, rule) {
            t.1 = Some(flag);
        }
    }
    let mut targets: Vec<Target> = targets
        .into_iter()
        .map(|((rule, identity), (events, flag))| Target {
            rule,
            identity: identity.cloned(),
            events,
            flag,
        })
        .collect();
    targets.sort_unstable_by(|a, b| (a.rule, &a.identity).cmp(&(b.rule, &b.identity)));
    targets
}

/// The value of the rule's first flag item.
pub fn first_flag(f: &Finding, rule: &Rule) -> Option<bool> {
    f.field(rule.items.flag).and_then(Value::as_bool)
}

fn user_types(evidence: &[Evidence], rules: &[Rule]) -> Vec<Text> {
    // The shared texts themselves: no string made per event.
    let mut out: Vec<Text> = evidence
        .iter()
        .filter_map(|e| {
            let rule = &rules[usize::from(e.finding.rule)];
            match e.finding.field(rule.items.user_type) {
                Some(Value::Text(t)) => Some(t),
                _ => None,
            }
        })
        .collect::<FxHashSet<&Text>>()
        .into_iter()
        .cloned()
        .collect();
    out.sort_unstable();
    out
}

/// Distinct addresses in address order: IPv4 before IPv6, each numerically; anything
/// that is not an address last, by text.
pub fn sort_ips<'a>(ips: impl Iterator<Item = &'a Text>) -> Vec<Text> {
    let distinct: FxHashSet<&Text> = ips.collect();
    let mut out: Vec<(Option<IpAddr>, &Text)> = distinct
        .into_iter()
        .map(|t| (t.parse::<IpAddr>().ok(), t))
        .collect();
    out.sort_unstable_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.1.cmp(b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(b.1),
    });
    out.into_iter().map(|(_, t)| t.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::tests::finding;

    fn ev(actor: &str, line: u64, ts: i64, target: &str, flag: Option<bool>) -> Evidence {
        let mut f = finding(actor, line, ts);
        f.fields = vec![Some(Value::Text(target.into())), flag.map(Value::Bool)];
        Evidence {
            finding: f,
            change: None,
            allowed: None,
        }
    }

    #[test]
    fn group_orders_actors_targets_and_evidence() {
        let rules = Rule::builtin();
        let events = vec![
            ev("bob", 7, 300, "mbx2", Some(false)),
            ev("alice", 5, 200, "mbx1", Some(true)),
            ev("bob", 1, 100, "mbx2", Some(true)),
            ev("bob", 3, 100, "mbx1", Some(true)),
        ];
        let g = group(events, &rules);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].actor.as_deref(), Some("alice"));
        let bob = &g[1];
        let lines: Vec<u64> = bob.evidence.iter().map(|e| e.finding.at.line).collect();
        assert_eq!(lines, vec![1, 3, 7]);
        assert_eq!(bob.first_seen, DateTime::from_timestamp(100, 0));
        assert_eq!(bob.last_seen, DateTime::from_timestamp(300, 0));
        assert_eq!(bob.targets.len(), 2);
        assert_eq!(bob.targets[0].identity.as_deref(), Some("mbx1"));
        assert_eq!(bob.targets[1].events, 2);
        assert_eq!(bob.targets[1].flag, Some(false), "last event's flag wins");
        let ips: Vec<&str> = bob.source_ips.iter().map(|t| &**t).collect();
        assert_eq!(ips, vec!["10.0.0.0", "10.0.0.1"]);
    }

    // Regression (issue 22): an actor's targets were keyed by identity alone, so a
    // bypass on alex and two role assignments to alex read "alex (on, 3)".
    #[test]
    fn targets_are_per_rule_and_only_the_flag_rule_has_a_state() {
        let toml = r#"
[rule]
rule_id = "11111111-0000-0000-0000-000000000000"
name = "Role assigned"
type = "query"
language = "kuery"
query = "event.action:New-ManagementRoleAssignment"
severity = "low"
risk_score = 21
"#;
        let other = match crate::rule::load::parse(toml).unwrap() {
            crate::rule::load::Loaded::Runs(r) => *r,
            crate::rule::load::Loaded::NotRun(n) => panic!("{}", n.reason),
        };
        assert!(other.items.flag.is_none() && other.items.target.is_some());
        let mut rules = Rule::builtin();
        rules.push(other);
        let mut events = vec![ev("adm", 1, 100, "alex", Some(true))];
        for line in [2, 3] {
            let mut e = ev("adm", line, 200, "alex", None);
            e.finding.rule = 1;
            // The published rule's items: target first, no flag.
            e.finding.fields = vec![Some(Value::Text("alex".into()))];
            events.push(e);
        }
        let g = group(events, &rules);
        let t = &g[0].targets;
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!((t[0].rule, t[0].events, t[0].flag), (0, 1, Some(true)));
        assert_eq!((t[1].rule, t[1].events, t[1].flag), (1, 2, None));
        let items: Vec<crate::rule::Items> = rules.iter().map(|r| r.items).collect();
        assert!(t[0].has_state(&items));
        assert!(!t[1].has_state(&items));
    }

    #[test]
    fn ips_sort_as_addresses() {
        let ips: Vec<Text> = [
            "10.0.0.10",
            "10.0.0.9",
            "::1",
            "host",
            "2.0.0.1",
            "10.0.0.9",
        ]
        .into_iter()
        .map(Text::from)
        .collect();
        let sorted = sort_ips(ips.iter());
        let sorted: Vec<&str> = sorted.iter().map(|t| &**t).collect();
        assert_eq!(
            sorted,
            vec!["2.0.0.1", "10.0.0.9", "10.0.0.10", "::1", "host"]
        );
    }
}
