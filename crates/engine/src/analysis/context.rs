//! The context pass: what the bypassed accounts and the actors did, gathered in a
//! second prefiltered scan that runs only when the first one found something.
//!
//! Place in the flow: `engine` builds a [`Watch`] from the first pass's analysis (each
//! bypassed account with its periods, each actor with the times of its changes), a
//! case-insensitive prefilter from their names as JSON spells them, and scans the
//! inputs again with the [`Activity`] sink. The sink keeps only bounded aggregates
//! (counts per day and per period, per-operation statistics, a capped list of
//! audit-tampering records), never the records themselves, and its state merges like
//! every partial (commutative sums; the tampering list in input order).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::allow::key;
use crate::field::Field;
use crate::findings::{At, Merge, Shift, Text};
use crate::record::Record;
use crate::scan::{Sink, SinkCx};

/// Most distinct source IPs kept per operation statistic.
pub const MAX_IPS: usize = 32;
/// Most audit-tampering records kept per run.
pub const MAX_TAMPERING: usize = 1000;

/// Unix-second spans `[start, end)` of an account's periods (a missing start: from
/// the beginning; a missing end: open).
pub type Spans = Vec<(Option<i64>, Option<i64>)>;

/// Whom the context pass watches, and when.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    /// Bypassed accounts (keys: trimmed, lower case) and their periods as Unix-second
    /// spans `[start, end)` (a missing start: from the beginning; a missing end: open).
    pub accounts: Vec<(String, Spans)>,
    /// Actors (keys) and the windows around their changes, merged and sorted.
    pub actors: Vec<(String, Vec<(i64, i64)>)>,
    /// How many changes each actor made (before their windows were merged).
    pub actor_changes: Vec<u64>,
    /// Each actor as first spelled in its changes (for reports).
    pub actor_names: Vec<String>,
    /// Every spelling of the watched names seen in the findings (the prefilter
    /// searches these, their lower and their upper case).
    pub spellings: Vec<String>,
    /// How far before and after its periods an account's mailbox-audit records are
    /// counted (seconds; `--context-horizon`).
    pub horizon: i64,
    by_key: FxHashMap<String, (Vec<u32>, Vec<u32>)>,
    by_local: FxHashMap<String, (Vec<u32>, Vec<u32>)>,
}

impl Watch {
    /// Builds the lookup tables.
    pub fn new(accounts: Vec<(String, Spans)>, actors: Vec<(String, Vec<(i64, i64)>)>) -> Watch {
        let mut w = Watch {
            accounts,
            actors,
            ..Watch::default()
        };
        for (i, (k, _)) in w.accounts.iter().enumerate() {
            w.by_key.entry(k.clone()).or_default().0.push(i as u32);
            w.by_local
                .entry(local(k).to_string())
                .or_default()
                .0
                .push(i as u32);
        }
        for (i, (k, _)) in w.actors.iter().enumerate() {
            w.by_key.entry(k.clone()).or_default().1.push(i as u32);
            w.by_local
                .entry(local(k).to_string())
                .or_default()
                .1
                .push(i as u32);
        }
        w
    }

    /// Whether account `a`'s records at `t` are counted: `t` within the horizon of
    /// one of its periods (an open side reaches as far as the data).
    fn in_reach(&self, a: usize, t: i64) -> bool {
        let h = self.horizon;
        self.accounts[a].1.iter().any(|&(start, end)| {
            start.is_none_or(|s| t >= s.saturating_sub(h))
                && end.is_none_or(|e| t < e.saturating_add(h))
        })
    }

    /// Every time the context pass counts a record at: each account's periods widened
    /// by the horizon, each actor's windows. A record at another time changes nothing
    /// in its [`Activity`], so the pass may skip the blocks that hold no such time.
    pub fn times(&self) -> crate::index::Times {
        let h = self.horizon;
        let accounts = self.accounts.iter().flat_map(|(_, spans)| {
            spans.iter().map(move |&(start, end)| {
                (
                    start.map_or(i64::MIN, |s| s.saturating_sub(h)),
                    end.map_or(i64::MAX, |e| e.saturating_add(h)),
                )
            })
        });
        let actors = self.actors.iter().flat_map(|(_, w)| w.iter().copied());
        crate::index::Times::new(accounts.chain(actors).collect())
    }

    /// Whether there is anyone to watch.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.actors.is_empty()
    }

    /// The literals a record of a watched name must hold: each name's longest run
    /// that JSON writers leave as it is (case is ignored by the prefilter). `None` when
    /// a name has no such run long enough: then every record must be parsed.
    pub fn literals(&self) -> Option<Vec<String>> {
        let mut names = self
            .accounts
            .iter()
            .map(|a| &a.0)
            .chain(self.actors.iter().map(|a| &a.0));
        names.try_fold(Vec::new(), |mut out, n| {
            out.push(literal_of(n)?);
            // A domainless name also matches user ids with that local part: its literal
            // is a substring of theirs, so it serves both.
            Some(out)
        })
    }

    /// The watched accounts and actors a user id names: the same name, or, where one
    /// side has no domain (`alice` for `alice@contoso.com`), the same local part.
    fn lookup(&self, user: &str) -> (Vec<u32>, Vec<u32>) {
        let k = key(user);
        let mut accounts = Vec::new();
        let mut actors = Vec::new();
        let mut take = |hit: Option<&(Vec<u32>, Vec<u32>)>, domainless_only: bool| {
            if let Some((a, b)) = hit {
                for &i in a {
                    if !domainless_only || !self.accounts[i as usize].0.contains('@') {
                        accounts.push(i);
                    }
                }
                for &i in b {
                    if !domainless_only || !self.actors[i as usize].0.contains('@') {
                        actors.push(i);
                    }
                }
            }
        };
        take(self.by_key.get(&k), false);
        if k.contains('@') {
            // A watched name without a domain matches this user's local part.
            take(self.by_key.get(local(&k)), true);
        } else {
            // This domainless user id matches watched names with its local part.
            take(self.by_local.get(&k), false);
        }
        accounts.sort_unstable();
        accounts.dedup();
        actors.sort_unstable();
        actors.dedup();
        (accounts, actors)
    }
}

fn local(k: &str) -> &str {
    k.split('@').next().unwrap_or(k)
}

/// The longest run of a name that every JSON writer leaves as it is (no quote,
/// backslash, slash, control or non-ASCII character, nothing PowerShell escapes).
pub fn literal_of(name: &str) -> Option<String> {
    let unsafe_char = |c: char| !c.is_ascii() || c.is_ascii_control() || "\"\\/<>&'".contains(c);
    name.split(unsafe_char)
        .max_by_key(|f| f.len())
        .filter(|f| f.len() >= 3)
        .map(str::to_string)
}

/// Count, first and last time, and source IPs of one operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpStat {
    /// Records.
    pub count: u64,
    /// First record time.
    pub first: Option<DateTime<Utc>>,
    /// Last record time.
    pub last: Option<DateTime<Utc>>,
    /// Distinct source IPs: the [`MAX_IPS`] lowest in text order.
    pub source_ips: BTreeSet<Text>,
}

impl OpStat {
    fn add(&mut self, t: DateTime<Utc>, ip: Option<&Text>) {
        self.count += 1;
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
        if let Some(ip) = ip {
            self.keep_ip(ip);
        }
    }

    /// Keeps the [`MAX_IPS`] lowest addresses (in text order): the same set however the
    /// records are grouped into chunks, files or shards before merging.
    fn keep_ip(&mut self, ip: &Text) {
        let full = self.source_ips.len() >= MAX_IPS;
        if full && self.source_ips.last().is_some_and(|last| ip >= last) {
            return;
        }
        self.source_ips.insert(ip.clone());
        if self.source_ips.len() > MAX_IPS {
            self.source_ips.pop_last();
        }
    }

    fn merge(&mut self, o: OpStat) {
        self.count += o.count;
        self.first = match (self.first, o.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, o.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for ip in &o.source_ips {
            self.keep_ip(ip);
        }
    }
}

/// An audit-tampering record by a watched actor, near one of its changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tampering {
    /// The actor's index in the watch.
    pub actor: u32,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// The operation.
    pub operation: Text,
    /// Where the record is.
    pub at: At,
    /// The cmdlet, rebuilt.
    pub command_line: Option<String>,
}

/// (workload, operation) of a record.
pub type OpKey = (Text, Text);

/// What the context pass keeps: bounded aggregates per watched name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Records selected and attributed to a watched name.
    pub records: u64,
    /// Mailbox-audit records per (account, day number).
    #[serde(with = "crate::findings::pairs")]
    pub mailbox_days: BTreeMap<(u32, i32), u64>,
    /// Mailbox-audit records per (account, slot): slot `2k` is the time before period
    /// `k` (after period `k - 1`), slot `2k + 1` is period `k`.
    #[serde(with = "crate::findings::pairs")]
    pub mailbox_slots: BTreeMap<(u32, u32), u64>,
    /// Other activity of an account inside its periods.
    #[serde(with = "crate::findings::pairs")]
    pub other_during: BTreeMap<(u32, OpKey), OpStat>,
    /// Activity of an actor inside the windows around its changes.
    #[serde(with = "crate::findings::pairs")]
    pub actor_ops: BTreeMap<(u32, OpKey), OpStat>,
    /// Audit-tampering records of actors inside their windows, in input order.
    pub tampering: Vec<Tampering>,
}

impl Merge for Activity {
    fn append(&mut self, next: Activity, shift: Shift) {
        self.records += next.records;
        for (k, n) in next.mailbox_days {
            *self.mailbox_days.entry(k).or_default() += n;
        }
        for (k, n) in next.mailbox_slots {
            *self.mailbox_slots.entry(k).or_default() += n;
        }
        for (k, s) in next.other_during {
            self.other_during.entry(k).or_default().merge(s);
        }
        for (k, s) in next.actor_ops {
            self.actor_ops.entry(k).or_default().merge(s);
        }
        let room = MAX_TAMPERING.saturating_sub(self.tampering.len());
        self.tampering
            .extend(next.tampering.into_iter().take(room).map(|mut t| {
                t.at.line += shift.lines;
                t.at.offset += shift.bytes;
                t
            }));
    }
}

/// Mailbox-audit record types: Exchange mailbox item records (`ExchangeItem` 2,
/// `ExchangeItemGroup` 3, `ExchangeItemAggregated` 50 — MailItemsAccessed, Send,
/// HardDelete, …), the records a bypass association stops.
pub fn is_mailbox_audit(record_type: &str) -> bool {
    matches!(
        record_type.trim(),
        "2" | "3" | "50" | "ExchangeItem" | "ExchangeItemGroup" | "ExchangeItemAggregated"
    )
}

/// Operations that reduce or stop what is audited (besides the bypass itself), judged
/// from their `parameters` (name, value):
///
/// - removing the audit configuration or a retention policy, and creating or changing a
///   retention policy (it may shorten what is kept), always;
/// - `Set-Mailbox`, `Set-OrganizationConfig`, `Set-MailboxDatabase` and
///   `Set-AdminAuditLogConfig` when one of their audit parameters reduces auditing:
///   an `…Enabled` set to false (`-AuditEnabled $false`,
///   `-UnifiedAuditLogIngestionEnabled $false`), an `…Disabled` set to true, an age
///   limit or an audited-action list that is replaced or has items removed (either may
///   shorten), an excluded-cmdlet list. Turning auditing on (`-AuditEnabled $true`) or
///   adding audited actions (`@{Add=…}`) is not tampering. A value that cannot be read
///   counts as reducing, and so does `Set-AdminAuditLogConfig` with no readable
///   parameter: what it changed is unknown.
pub fn is_tampering(operation: &str, parameters: &[(String, Option<String>)]) -> bool {
    match operation {
        "Remove-AdminAuditLogConfig"
        | "New-UnifiedAuditLogRetentionPolicy"
        | "Set-UnifiedAuditLogRetentionPolicy"
        | "Remove-UnifiedAuditLogRetentionPolicy"
        | "Set-MailboxAuditBypassAssociation" => true,
        "Set-Mailbox" | "Set-OrganizationConfig" | "Set-MailboxDatabase" => parameters
            .iter()
            .any(|(n, v)| reduces_auditing(n, v.as_deref())),
        "Set-AdminAuditLogConfig" => {
            parameters.is_empty()
                || parameters
                    .iter()
                    .any(|(n, v)| reduces_auditing(n, v.as_deref()))
        }
        _ => false,
    }
}

/// Whether setting the parameter `name` to `value` reduces what is audited (see
/// [`is_tampering`]); a parameter that is not about auditing never does.
fn reduces_auditing(name: &str, value: Option<&str>) -> bool {
    let lower = name.to_ascii_lowercase();
    if !lower.contains("audit") {
        return false;
    }
    let flag = value.and_then(crate::record::parse_flag);
    if lower.ends_with("enabled") {
        return flag != Some(true);
    }
    if lower.ends_with("disabled") {
        return flag != Some(false);
    }
    if lower.contains("excluded") || lower.contains("agelimit") {
        return true;
    }
    // An audited-action list (AuditOwner, AuditDelegate, AuditAdmin, AdminAuditLogCmdlets,
    // …): only adding to it leaves everything audited that was.
    match value {
        Some(v) => {
            let v = v.to_ascii_lowercase();
            !v.contains("add") || v.contains("remove")
        }
        None => true,
    }
}

/// Which slot of an account's periods a time falls in (see [`Activity::mailbox_slots`]).
pub fn slot(periods: &[(Option<i64>, Option<i64>)], t: i64) -> u32 {
    for (k, &(start, end)) in periods.iter().enumerate() {
        if start.is_some_and(|s| t < s) {
            return 2 * k as u32;
        }
        if end.is_none_or(|e| t < e) {
            return 2 * k as u32 + 1;
        }
    }
    2 * periods.len() as u32
}

/// The index of the period a time falls in, if any.
fn during(periods: &[(Option<i64>, Option<i64>)], t: i64) -> bool {
    slot(periods, t) % 2 == 1
}

static RECORD_TYPE: std::sync::LazyLock<Field> =
    std::sync::LazyLock::new(|| Field::parse("o365.audit.RecordType"));
static EVENT_CODE: std::sync::LazyLock<Field> =
    std::sync::LazyLock::new(|| Field::parse("event.code"));

impl Sink for Activity {
    type Params = Watch;

    fn selected(
        &mut self,
        _: &[usize],
        record: &Record<'_, '_>,
        at: At,
        cx: &mut SinkCx<'_, Watch>,
    ) {
        let Some(user) = record.actor() else { return };
        let (mut accounts, mut actors) = cx.params.lookup(&user);
        if accounts.is_empty() && actors.is_empty() {
            return;
        }
        let Some(t) = record.timestamp() else { return };
        let secs = t.timestamp();
        // Only records at watched times count (`Watch::times`): what the index lets
        // the pass skip is then exactly what would not count.
        let watch = cx.params;
        accounts.retain(|&a| watch.in_reach(a as usize, secs));
        actors.retain(|&i| {
            let windows = &watch.actors[i as usize].1;
            windows.iter().any(|&(s, e)| s <= secs && secs <= e)
        });
        if accounts.is_empty() && actors.is_empty() {
            return;
        }
        self.records += 1;
        let workload = record.text(&Field::Provider).map(|s| cx.texts.text(&s));
        let operation = record.text(&Field::Action).map(|s| cx.texts.text(&s));
        let op: OpKey = (
            workload.unwrap_or_else(|| Text::from("")),
            operation.clone().unwrap_or_else(|| Text::from("")),
        );
        let ip = record.client_address().and_then(|a| cx.texts.ip(a));
        let mailbox = record
            .text(&RECORD_TYPE)
            .or_else(|| record.text(&EVENT_CODE))
            .is_some_and(|rt| is_mailbox_audit(&rt));
        for a in accounts {
            let periods = &cx.params.accounts[a as usize].1;
            if mailbox {
                let day = secs.div_euclid(86_400) as i32;
                *self.mailbox_days.entry((a, day)).or_default() += 1;
                *self
                    .mailbox_slots
                    .entry((a, slot(periods, secs)))
                    .or_default() += 1;
            } else if during(periods, secs) {
                self.other_during
                    .entry((a, op.clone()))
                    .or_default()
                    .add(t, ip.as_ref());
            }
        }
        for i in actors {
            self.actor_ops
                .entry((i, op.clone()))
                .or_default()
                .add(t, ip.as_ref());
            if let Some(operation) = &operation
                && &**operation != "Set-MailboxAuditBypassAssociation"
                && is_tampering(operation, &record.parameters())
                && self.tampering.len() < MAX_TAMPERING
            {
                self.tampering.push(Tampering {
                    actor: i,
                    timestamp: t,
                    operation: operation.clone(),
                    at,
                    command_line: record.command_line(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_or_by_local_part_when_one_side_has_no_domain() {
        let w = Watch::new(
            vec![
                ("svc@contoso.com".into(), vec![]),
                ("archiver".into(), vec![]),
            ],
            vec![("adm@contoso.com".into(), vec![])],
        );
        assert_eq!(w.lookup(" SVC@Contoso.com"), (vec![0], vec![]));
        assert_eq!(w.lookup("svc"), (vec![0], vec![]));
        assert_eq!(w.lookup("archiver@contoso.com"), (vec![1], vec![]));
        assert_eq!(w.lookup("adm@contoso.com"), (vec![], vec![0]));
        assert_eq!(w.lookup("svc@other.com"), (vec![], vec![]));
        assert_eq!(w.lookup("nobody"), (vec![], vec![]));
    }

    #[test]
    fn literals_avoid_what_json_escapes() {
        assert_eq!(
            literal_of("a.b@contoso.com").as_deref(),
            Some("a.b@contoso.com")
        );
        assert_eq!(
            literal_of(r"NT AUTHORITY\SYSTEM (Microsoft.Exchange.ServiceHost)").as_deref(),
            Some("SYSTEM (Microsoft.Exchange.ServiceHost)")
        );
        assert_eq!(literal_of("ab"), None);
    }

    #[test]
    fn slots_alternate_gaps_and_periods() {
        let p = [(Some(10), Some(20)), (Some(30), None)];
        assert_eq!(slot(&p, 5), 0);
        assert_eq!(slot(&p, 10), 1);
        assert_eq!(slot(&p, 20), 2);
        assert_eq!(slot(&p, 30), 3);
        assert_eq!(slot(&p, 1000), 3);
        let predates = [(None, Some(20))];
        assert_eq!(slot(&predates, 0), 1);
        assert_eq!(slot(&predates, 25), 2);
        assert_eq!(slot(&[], 7), 0);
    }

    #[test]
    fn activity_merges_in_any_grouping_and_round_trips_through_json() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let op = |n: &str| (Text::from("Exchange"), Text::from(n));
        let part = |day: i32, n: &str, ip: &str, line: u64| {
            let mut a = Activity {
                records: 1,
                ..Activity::default()
            };
            *a.mailbox_days.entry((0, day)).or_default() += 1;
            *a.mailbox_slots.entry((0, 1)).or_default() += 1;
            a.actor_ops
                .entry((0, op(n)))
                .or_default()
                .add(t(i64::from(day) * 86_400), Some(&Text::from(ip)));
            a.tampering.push(Tampering {
                actor: 0,
                timestamp: t(5),
                operation: op(n).1,
                at: At {
                    input: 0,
                    line,
                    offset: line * 10,
                },
                command_line: None,
            });
            a
        };
        let (a, b, c) = (
            part(1, "A", "1.1.1.1", 0),
            part(2, "B", "2.2.2.2", 1),
            part(2, "A", "3.3.3.3", 2),
        );
        let shift = Shift {
            lines: 10,
            bytes: 100,
        };
        let mut left = a.clone();
        left.append(b.clone(), shift);
        left.append(c.clone(), shift);
        let mut bc = b;
        bc.append(c, Shift::default());
        let mut right = a;
        right.append(bc, shift);
        assert_eq!(left, right);
        assert_eq!(left.actor_ops[&(0, op("A"))].count, 2);
        let text = serde_json::to_string(&left).unwrap();
        let back: Activity = serde_json::from_str(&text).unwrap();
        assert_eq!(back, left);
    }

    // Regression: only the first 32 addresses seen were kept, so the set depended on
    // how records were grouped before merging (chunks, files, shards).
    #[test]
    fn source_ips_are_the_same_whatever_the_grouping() {
        let t = DateTime::from_timestamp(0, 0).unwrap();
        let ips: Vec<Text> = (0..100)
            .map(|i| Text::from(format!("10.0.{}.{}", i % 7, i)))
            .collect();
        let stat = |ips: &[Text]| {
            let mut s = OpStat::default();
            for ip in ips {
                s.add(t, Some(ip));
            }
            s
        };
        let whole = stat(&ips);
        assert_eq!(whole.source_ips.len(), MAX_IPS);
        for cut in [1, 10, 33, 60, 99] {
            let (a, b) = ips.split_at(cut);
            let mut left = stat(a);
            left.merge(stat(b));
            assert_eq!(left, whole, "cut at {cut}");
            let mut right = stat(b);
            right.merge(stat(a));
            assert_eq!(
                right.source_ips, whole.source_ips,
                "either order, cut at {cut}"
            );
        }
    }

    #[test]
    fn tampering_operations() {
        let p = |pairs: &[(&str, &str)]| -> Vec<(String, Option<String>)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), Some(v.to_string())))
                .collect()
        };
        assert!(is_tampering("Set-AdminAuditLogConfig", &[]));
        assert!(is_tampering(
            "Set-AdminAuditLogConfig",
            &p(&[("UnifiedAuditLogIngestionEnabled", "False")])
        ));
        assert!(!is_tampering(
            "Set-AdminAuditLogConfig",
            &p(&[("UnifiedAuditLogIngestionEnabled", "True")])
        ));
        assert!(is_tampering(
            "Set-Mailbox",
            &p(&[("Identity", "x"), ("AuditEnabled", "False")])
        ));
        assert!(!is_tampering(
            "Set-Mailbox",
            &p(&[("Identity", "x"), ("AuditEnabled", "$true")])
        ));
        assert!(!is_tampering("Set-Mailbox", &p(&[("Identity", "x")])));
        assert!(is_tampering(
            "Set-Mailbox",
            &p(&[("AuditLogAgeLimit", "0")])
        ));
        assert!(is_tampering(
            "Set-Mailbox",
            &p(&[("AuditOwner", "@{Remove=\"MailboxLogin\"}")])
        ));
        assert!(!is_tampering(
            "Set-Mailbox",
            &p(&[("AuditOwner", "@{Add=\"MailboxLogin\"}")])
        ));
        assert!(is_tampering(
            "Set-OrganizationConfig",
            &p(&[("AuditDisabled", "True")])
        ));
        assert!(!is_tampering(
            "Set-OrganizationConfig",
            &p(&[("AuditDisabled", "False")])
        ));
        assert!(!is_tampering(
            "New-InboxRule",
            &p(&[("AuditEnabled", "False")])
        ));
        assert!(is_tampering("Remove-AdminAuditLogConfig", &[]));
    }
}
