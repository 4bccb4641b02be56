//! The `mailbox_audit_bypass` analysis: the investigation Elastic's rule guide asks
//! for, answered from the archive.
//!
//! - **Changes**: each successful `Set-MailboxAuditBypassAssociation` is an `enable`,
//!   a `disable` or `unknown`, from the named parameter `AuditBypassEnabled` (the rule's
//!   flag evidence item), never from its position in the parameter list.
//! - **Periods** per bypassed account (the `target` evidence item: `Identity`, else
//!   `ObjectId`; names compared trimmed and ignoring case, every raw spelling listed):
//!   changes in time order (ties in input order); an enable starts a period and the next
//!   disable ends it; a repeated enable keeps the period; a disable before any enable of
//!   that account gives a period that *predates the data*; a period without a disable is
//!   *open at the end of the data*. A later disable with nothing open changes nothing.
//! - **Failed attempts**: the rule's `failed_attempt` context selection.
//! - **Blind spot** and **actor context**: from the second pass
//!   ([`super::context::Activity`]).
//!
//! Everything is computed from all findings; the time window only filters what is
//! shown, so a period that began before `--since` is still seen to begin.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::allow::{Allowlist, key};
use crate::findings::{At, Finding, Text, Value, Why};
use crate::rule::Rule;

use super::context::{Activity, OpKey, OpStat, Tampering, Watch};
use super::{Change, Evidence, Window};

/// The bypass state an account is left in at the end of the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The last period is open.
    On,
    /// Every period was closed.
    Off,
    /// Only changes whose direction is unknown.
    Unknown,
}

/// One change of an account's bypass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeItem {
    /// What it did.
    pub change: Change,
    /// The finding.
    pub finding: Finding,
}

/// A span during which an account's mailbox actions were not audited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    /// When the bypass was turned on (`None`: before the data begins).
    pub start: Option<DateTime<Utc>>,
    /// When it was turned off (`None`: still on at the end of the data).
    pub end: Option<DateTime<Utc>>,
    /// No disable was seen.
    pub open: bool,
    /// No enable was seen: it was on before the data begins.
    pub predates_data: bool,
    /// Who turned it on.
    pub set_by: Option<Text>,
    /// Who turned it off.
    pub ended_by: Option<Text>,
    /// Where the enable is.
    pub start_at: Option<At>,
    /// Where the disable is.
    pub end_at: Option<At>,
    /// Mailbox-audit records of the account before, during and after the period (the
    /// context pass; before/after reach to the neighbouring periods, and no further
    /// than the context horizon from any period).
    pub mailbox_audit: Option<[u64; 3]>,
}

/// What the bypassed account did while it was bypassed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BlindSpot {
    /// Mailbox-audit records before the first period (within the context horizon).
    pub before: u64,
    /// Inside the periods.
    pub during: u64,
    /// After the last period ended, within the context horizon (0 while it is open).
    pub after: u64,
    /// Mailbox-audit records per day (date, records), within the context horizon of
    /// its periods.
    pub per_day: Vec<(chrono::NaiveDate, u64)>,
    /// Its other activity inside the periods, by workload and operation.
    pub other_during: Vec<(OpKey, OpStat)>,
}

/// One bypassed account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The name, trimmed and lower case.
    pub identity: String,
    /// Every spelling seen, sorted.
    pub spellings: Vec<String>,
    /// The state at the end: of the window when `--until` is given, else of the data.
    pub state_at_end: State,
    /// The allowlist entry that names it.
    pub allowed: Option<usize>,
    /// Its changes in time order.
    pub changes: Vec<ChangeItem>,
    /// Its periods in time order.
    pub periods: Vec<Period>,
    /// What it did while bypassed (when the context pass ran).
    pub blind_spot: Option<BlindSpot>,
}

/// An actor's activity around its changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorContext {
    /// The actor, trimmed and lower case (as accounts are compared).
    pub actor: String,
    /// The actor as first spelled in its changes.
    pub spelled: String,
    /// Its changes.
    pub changes: u64,
    /// The window around each change.
    pub window: Duration,
    /// What it did in those windows, by workload and operation.
    pub operations: Vec<(OpKey, OpStat)>,
    /// Its source IPs in those windows.
    pub source_ips: Vec<Text>,
    /// Its audit-tampering operations in those windows.
    pub tampering: Vec<Tampering>,
}

/// The investigation of one rule's findings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Investigation {
    /// The rule.
    pub rule: u16,
    /// Bypassed accounts, by identity.
    pub accounts: Vec<Account>,
    /// Failed attempts in evidence order, with their allowlist entries.
    pub attempts: Vec<Evidence>,
    /// Failed attempts outside the window (not listed).
    pub attempts_outside_window: u64,
    /// The actors' context (when the context pass ran), by actor.
    pub actor_context: Option<Vec<ActorContext>>,
    /// Matches of the other rules that ran beside this one, by the people involved:
    /// a changer's within the context window of one of its changes, a bypassed
    /// account's during one of its periods. Evidence order.
    pub related: Vec<Related>,
}

/// A match of another rule by someone involved in a bypass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Related {
    /// Who it is (trimmed, lower case).
    pub who: String,
    /// How they are involved.
    pub role: Role,
    /// The other rule's finding.
    pub finding: Finding,
}

/// How someone is involved in a bypass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// They changed a bypass (the match is within the context window of a change).
    Changer,
    /// Their account was bypassed (the match is inside a bypass period).
    Bypassed,
}

/// Reads a finding of the bypass rule.
#[derive(Clone, Copy, Debug)]
pub struct Reader {
    target: Option<usize>,
    flag: Option<usize>,
    failed: Option<u16>,
}

impl Reader {
    /// The evidence items of `rule` this analysis reads.
    pub fn new(rule: &Rule) -> Reader {
        Reader {
            target: rule.items.target,
            flag: rule.items.flag,
            failed: rule
                .meta
                .context
                .iter()
                .position(|c| c.name == "failed_attempt")
                .map(|i| i as u16),
        }
    }

    /// The bypassed account a finding names, as spelled.
    pub fn target<'f>(&self, f: &'f Finding) -> Option<&'f str> {
        f.field(self.target).and_then(Value::as_text)
    }

    /// A rule match with its change and allowlist entry.
    pub fn evidence(&self, finding: Finding, allow: &Allowlist) -> Evidence {
        let change = self.change(&finding);
        let target = self.target(&finding).map(str::to_string);
        Evidence::of(finding, Some(change), target.as_deref(), allow)
    }

    /// What a change did.
    pub fn change(&self, f: &Finding) -> Change {
        match f.field(self.flag).and_then(Value::as_bool) {
            Some(true) => Change::Enable,
            Some(false) => Change::Disable,
            None => Change::Unknown,
        }
    }

    fn is_attempt(&self, f: &Finding) -> bool {
        self.failed.is_some_and(|c| f.why == Why::Context(c))
    }
}

/// The accounts and periods of one rule's changes (all findings, in input order).
pub fn accounts(findings: &[Finding], rule: u16, reader: Reader) -> Vec<Account> {
    let mut by_key: BTreeMap<String, (Vec<String>, Vec<ChangeItem>)> = BTreeMap::new();
    for f in findings
        .iter()
        .filter(|f| f.rule == rule && f.why == Why::Rule)
    {
        let Some(raw) = reader.target(f) else {
            continue;
        };
        let k = key(raw);
        if k.is_empty() {
            continue;
        }
        let entry = by_key.entry(k).or_default();
        if !entry.0.iter().any(|s| s == raw) {
            entry.0.push(raw.to_string());
        }
        entry.1.push(ChangeItem {
            change: reader.change(f),
            finding: f.clone(),
        });
    }
    by_key
        .into_iter()
        .map(|(identity, (mut spellings, mut changes))| {
            spellings.sort_unstable();
            changes.sort_by_key(|c| c.finding.order_key());
            let periods = periods(&changes);
            let state_at_end = match periods.last() {
                Some(p) if p.open => State::On,
                Some(_) => State::Off,
                None => State::Unknown,
            };
            Account {
                identity,
                spellings,
                state_at_end,
                allowed: None,
                changes,
                periods,
                blind_spot: None,
            }
        })
        .collect()
}

/// The state at `until` (exclusive) from the periods: on when the last period begun
/// before it ends at or after it (or never), off when that period ended before it,
/// unknown when no period begins before it.
pub fn state_at(periods: &[Period], until: DateTime<Utc>) -> State {
    match periods.iter().rfind(|p| p.start.is_none_or(|s| s < until)) {
        Some(p) if p.end.is_none_or(|e| e >= until) => State::On,
        Some(_) => State::Off,
        None => State::Unknown,
    }
}

/// Periods from changes in time order.
pub fn periods(changes: &[ChangeItem]) -> Vec<Period> {
    let mut out: Vec<Period> = Vec::new();
    let mut seen_enable = false;
    for c in changes {
        let f = &c.finding;
        let open = out.last().is_some_and(|p| p.open);
        match c.change {
            Change::Enable if !open => {
                seen_enable = true;
                out.push(Period {
                    start: f.timestamp,
                    end: None,
                    open: true,
                    predates_data: false,
                    set_by: f.actor.clone(),
                    ended_by: None,
                    start_at: Some(f.at),
                    end_at: None,
                    mailbox_audit: None,
                });
            }
            Change::Enable | Change::Unknown => {}
            Change::Disable if open => {
                // `open` says a period exists.
                if let Some(p) = out.last_mut() {
                    p.end = f.timestamp;
                    p.open = false;
                    p.ended_by = f.actor.clone();
                    p.end_at = Some(f.at);
                }
            }
            Change::Disable if !seen_enable && out.is_empty() => out.push(Period {
                start: None,
                end: f.timestamp,
                open: false,
                predates_data: true,
                set_by: None,
                ended_by: f.actor.clone(),
                start_at: None,
                end_at: Some(f.at),
                mailbox_audit: None,
            }),
            Change::Disable => {}
        }
    }
    out
}

/// Everything the context pass must watch for: the accounts with their periods and
/// the actors with a window of `around` on either side of each of their changes inside
/// `window` (`--since`/`--until`: an actor whose changes all lie outside it has no
/// context to show).
pub fn watch(accounts: &[Account], around: Duration, horizon: Duration, window: Window) -> Watch {
    let spans = accounts
        .iter()
        .map(|a| {
            let spans = a
                .periods
                .iter()
                .map(|p| (p.start.map(|t| t.timestamp()), p.end.map(|t| t.timestamp())))
                .collect();
            (a.identity.clone(), spans)
        })
        .collect();
    let mut actors: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    let w = around.num_seconds();
    for a in accounts {
        for c in a
            .changes
            .iter()
            .filter(|c| window.contains(c.finding.timestamp))
        {
            if let (Some(actor), Some(t)) = (&c.finding.actor, c.finding.timestamp) {
                let t = t.timestamp();
                actors
                    .entry(key(actor))
                    .or_default()
                    .push((t.saturating_sub(w), t.saturating_add(w)));
            }
        }
    }
    let actors: Vec<(String, Vec<(i64, i64)>)> = actors
        .into_iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, mut spans)| {
            spans.sort_unstable();
            let mut merged: Vec<(i64, i64)> = Vec::new();
            for (s, e) in spans {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            (k, merged)
        })
        .collect();
    let changes: Vec<u64> = actors
        .iter()
        .map(|(k, _)| {
            let made = |c: &&ChangeItem| {
                c.finding.timestamp.is_some()
                    && window.contains(c.finding.timestamp)
                    && c.finding.actor.as_deref().is_some_and(|a| key(a) == *k)
            };
            accounts
                .iter()
                .map(|a| a.changes.iter().filter(made).count() as u64)
                .sum()
        })
        .collect();
    let mut spellings: Vec<String> = accounts
        .iter()
        .flat_map(|a| {
            let actors = a.changes.iter().filter_map(|c| c.finding.actor.as_deref());
            a.spellings.iter().map(String::as_str).chain(actors)
        })
        .map(|s| s.trim().to_string())
        .collect();
    spellings.sort_unstable();
    spellings.dedup();
    let names: Vec<String> = actors
        .iter()
        .map(|(k, _)| {
            let mut spelled: Vec<&ChangeItem> = accounts
                .iter()
                .flat_map(|a| &a.changes)
                .filter(|c| c.finding.actor.as_deref().is_some_and(|a| key(a) == *k))
                .collect();
            spelled.sort_by_key(|c| c.finding.order_key());
            spelled
                .first()
                .and_then(|c| c.finding.actor.as_deref())
                .map_or_else(|| k.clone(), |a| a.trim().to_string())
        })
        .collect();
    let mut watch = Watch::new(spans, actors);
    watch.actor_changes = changes;
    watch.actor_names = names;
    watch.spellings = spellings;
    watch.horizon = horizon.num_seconds();
    watch
}

/// Runs the investigation of rule `rule` over all findings (deduplicated, input order).
pub fn investigate(
    findings: &[Finding],
    rule: u16,
    rules: &[Rule],
    window: Window,
    allow: &Allowlist,
    context: Option<(&Watch, &Activity)>,
    around: Duration,
) -> Investigation {
    let reader = Reader::new(&rules[usize::from(rule)]);
    let mut accounts = accounts(findings, rule, reader);
    for a in &mut accounts {
        a.allowed = allow.find(&a.identity);
    }
    let mut actor_context = None;
    if let Some((watch, activity)) = context {
        attach_blind_spots(&mut accounts, watch, activity);
        actor_context = Some(actor_contexts(watch, activity, around));
    }
    // With `--until`, "at the end" is the end of the window, from the whole history.
    if let Some(until) = window.until {
        for a in &mut accounts {
            a.state_at_end = state_at(&a.periods, until);
        }
    }
    // The window filters what is shown, after the analysis.
    accounts.retain(|a| {
        a.changes
            .iter()
            .any(|c| window.contains(c.finding.timestamp))
            || a.periods.iter().any(|p| window.meets(p.start, p.end))
    });
    let mut attempts: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.rule == rule && reader.is_attempt(f))
        .collect();
    let before = attempts.len();
    attempts.retain(|f| window.contains(f.timestamp));
    let attempts_outside_window = (before - attempts.len()) as u64;
    attempts.sort_by_key(|f| f.order_key());
    let attempts = attempts
        .into_iter()
        .map(|f| Evidence::of(f.clone(), None, reader.target(f), allow))
        .collect();
    let related = related(findings, rule, &accounts, window, around);
    Investigation {
        rule,
        accounts,
        attempts,
        attempts_outside_window,
        actor_context,
        related,
    }
}

/// The other rules' matches (inside the window) by the changers, within `around` of
/// one of their changes, and by the bypassed accounts, inside one of their periods.
fn related(
    findings: &[Finding],
    rule: u16,
    accounts: &[Account],
    window: Window,
    around: Duration,
) -> Vec<Related> {
    let key = |s: &str| s.trim().to_lowercase();
    // Changer -> the times of its changes.
    let mut changers: std::collections::BTreeMap<String, Vec<DateTime<Utc>>> =
        std::collections::BTreeMap::new();
    for c in accounts.iter().flat_map(|a| &a.changes) {
        if let (Some(actor), Some(t)) = (c.finding.actor.as_deref(), c.finding.timestamp) {
            changers.entry(key(actor)).or_default().push(t);
        }
    }
    let mut out = Vec::new();
    for f in findings {
        if f.rule == rule || f.why != Why::Rule || !window.contains(f.timestamp) {
            continue;
        }
        let (Some(actor), Some(t)) = (f.actor.as_deref(), f.timestamp) else {
            continue;
        };
        let who = key(actor);
        if changers
            .get(&who)
            .is_some_and(|times| times.iter().any(|c| (t - *c).abs() <= around))
        {
            out.push(Related {
                who: who.clone(),
                role: Role::Changer,
                finding: f.clone(),
            });
        }
        let bypassed = accounts.iter().any(|a| {
            a.identity == who
                && a.periods
                    .iter()
                    .any(|p| p.start.is_none_or(|s| s <= t) && p.end.is_none_or(|e| t < e))
        });
        if bypassed {
            out.push(Related {
                who,
                role: Role::Bypassed,
                finding: f.clone(),
            });
        }
    }
    out.sort_by(|a, b| {
        (a.finding.order_key(), a.role as u8).cmp(&(b.finding.order_key(), b.role as u8))
    });
    out
}

fn attach_blind_spots(accounts: &mut [Account], watch: &Watch, activity: &Activity) {
    for (i, a) in accounts.iter_mut().enumerate() {
        // The watch was built from these accounts, in this order.
        debug_assert_eq!(watch.accounts[i].0, a.identity);
        let i = i as u32;
        let slot = |s: u32| activity.mailbox_slots.get(&(i, s)).copied().unwrap_or(0);
        let n = a.periods.len() as u32;
        for (k, p) in a.periods.iter_mut().enumerate() {
            let k = k as u32;
            p.mailbox_audit = Some([slot(2 * k), slot(2 * k + 1), slot(2 * k + 2)]);
        }
        let per_day = activity
            .mailbox_days
            .range((i, i32::MIN)..=(i, i32::MAX))
            .map(|(&(_, day), &n)| (crate::coverage::date_of(day), n))
            .collect();
        let other_during = activity
            .other_during
            .range((i, (Text::from(""), Text::from("")))..)
            .take_while(|((a, _), _)| *a == i)
            .map(|((_, op), s)| (op.clone(), s.clone()))
            .collect();
        a.blind_spot = Some(BlindSpot {
            before: slot(0),
            during: (0..n).map(|k| slot(2 * k + 1)).sum(),
            after: if a.state_at_end == State::On {
                0
            } else {
                slot(2 * n)
            },
            per_day,
            other_during,
        });
    }
}

fn actor_contexts(watch: &Watch, activity: &Activity, around: Duration) -> Vec<ActorContext> {
    watch
        .actors
        .iter()
        .enumerate()
        .map(|(i, (actor, windows))| {
            let i = i as u32;
            let operations: Vec<(OpKey, OpStat)> = activity
                .actor_ops
                .range((i, (Text::from(""), Text::from("")))..)
                .take_while(|((a, _), _)| *a == i)
                .map(|((_, op), s)| (op.clone(), s.clone()))
                .collect();
            let source_ips =
                super::actors::sort_ips(operations.iter().flat_map(|(_, s)| s.source_ips.iter()));
            let mut tampering: Vec<Tampering> = activity
                .tampering
                .iter()
                .filter(|t| t.actor == i)
                .cloned()
                .collect();
            tampering.sort_by_key(|t| (t.timestamp, t.at));
            ActorContext {
                actor: actor.clone(),
                spelled: watch
                    .actor_names
                    .get(i as usize)
                    .cloned()
                    .unwrap_or_else(|| actor.clone()),
                changes: watch
                    .actor_changes
                    .get(i as usize)
                    .copied()
                    .unwrap_or(windows.len() as u64),
                window: around,
                operations,
                source_ips,
                tampering,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::tests::finding;

    fn change(
        actor: &str,
        line: u64,
        ts: Option<i64>,
        target: &str,
        flag: Option<bool>,
    ) -> Finding {
        let mut f = finding(actor, line, ts.unwrap_or(0));
        f.timestamp = ts.and_then(|t| DateTime::from_timestamp(t, 0));
        f.fields = vec![Some(Value::Text(target.into())), flag.map(Value::Bool)];
        f
    }

    fn reader() -> Reader {
        Reader::new(&Rule::builtin()[0])
    }

    fn spans(a: &Account) -> Vec<(Option<i64>, Option<i64>, bool, bool)> {
        a.periods
            .iter()
            .map(|p| {
                (
                    p.start.map(|t| t.timestamp()),
                    p.end.map(|t| t.timestamp()),
                    p.open,
                    p.predates_data,
                )
            })
            .collect()
    }

    #[test]
    fn enable_disable_repeated_enable_and_open_periods() {
        let findings = vec![
            change("adm", 1, Some(100), "Svc@X.com", Some(true)),
            change("adm", 2, Some(150), "svc@x.com ", Some(true)),
            change("adm2", 3, Some(200), "svc@x.com", Some(false)),
            change("adm", 4, Some(300), "svc@x.com", None),
            change("adm", 5, Some(400), "svc@x.com", Some(true)),
        ];
        let a = accounts(&findings, 0, reader());
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].identity, "svc@x.com");
        assert_eq!(a[0].spellings, vec!["Svc@X.com", "svc@x.com", "svc@x.com "]);
        assert_eq!(
            spans(&a[0]),
            vec![
                (Some(100), Some(200), false, false),
                (Some(400), None, true, false)
            ]
        );
        assert_eq!(a[0].periods[0].set_by.as_deref(), Some("adm"));
        assert_eq!(a[0].periods[0].ended_by.as_deref(), Some("adm2"));
        assert_eq!(a[0].state_at_end, State::On);
    }

    #[test]
    fn a_disable_without_enable_predates_the_data() {
        let findings = vec![
            change("adm", 9, Some(500), "a", Some(false)),
            change("adm", 1, Some(100), "b", None),
            change("adm", 3, Some(600), "a", Some(false)),
        ];
        let a = accounts(&findings, 0, reader());
        assert_eq!(spans(&a[0]), vec![(None, Some(500), false, true)]);
        assert_eq!(a[0].state_at_end, State::Off);
        assert_eq!(a[1].state_at_end, State::Unknown);
        assert!(a[1].periods.is_empty());
    }

    #[test]
    fn ties_in_time_follow_input_order() {
        let findings = vec![
            change("adm", 2, Some(100), "a", Some(false)),
            change("adm", 1, Some(100), "a", Some(true)),
        ];
        let a = accounts(&findings, 0, reader());
        assert_eq!(spans(&a[0]), vec![(Some(100), Some(100), false, false)]);
    }

    /// The window from `since` to `until`, in seconds since the epoch.
    fn seconds(since: Option<i64>, until: Option<i64>) -> Window {
        Window {
            since: since.and_then(|t| DateTime::from_timestamp(t, 0)),
            until: until.and_then(|t| DateTime::from_timestamp(t, 0)),
        }
    }

    /// The built-in rule's investigation of `findings` over `window`, nothing allowed.
    fn investigate_in(findings: &[Finding], window: Window) -> Investigation {
        investigate(
            findings,
            0,
            &Rule::builtin(),
            window,
            &Allowlist::default(),
            None,
            Duration::hours(24),
        )
    }

    #[test]
    fn the_window_filters_after_the_analysis() {
        let findings = vec![
            change("adm", 1, Some(100), "a", Some(true)),
            change("adm", 2, Some(1000), "a", Some(false)),
            change("adm", 3, Some(50), "b", Some(true)),
            change("adm", 4, Some(60), "b", Some(false)),
        ];
        let window = seconds(Some(500), None);
        let inv = investigate_in(&findings, window);
        assert_eq!(inv.accounts.len(), 1, "b's period ended before the window");
        assert_eq!(
            spans(&inv.accounts[0]),
            vec![(Some(100), Some(1000), false, false)]
        );
    }

    #[test]
    fn the_state_at_the_end_of_the_window_comes_from_the_whole_history() {
        // bob: on inside the window, off after it; carol: on before it, off after it;
        // dave: on before it, off inside it; erin: only changes after it.
        let findings = vec![
            change("a1", 1, Some(500), "bob", Some(true)),
            change("a1", 2, Some(1500), "bob", Some(false)),
            change("a2", 3, Some(100), "carol", Some(true)),
            change("a2", 4, Some(2000), "carol", Some(false)),
            change("a3", 5, Some(200), "dave", Some(true)),
            change("a3", 6, Some(600), "dave", Some(false)),
            change("a4", 7, Some(1200), "erin", Some(true)),
        ];
        let window = seconds(Some(400), Some(1000));
        let inv = investigate_in(&findings, window);
        let states: Vec<(&str, State)> = inv
            .accounts
            .iter()
            .map(|a| (a.identity.as_str(), a.state_at_end))
            .collect();
        assert_eq!(
            states,
            vec![
                ("bob", State::On),
                ("carol", State::On),
                ("dave", State::Off)
            ]
        );
        // Without --until, the end of the data.
        let inv = investigate_in(&findings, Window::default());
        assert!(
            inv.accounts
                .iter()
                .all(|a| a.identity == "erin" || a.state_at_end == State::Off)
        );
        // A disable exactly at --until: still on inside the window.
        let at = |t| DateTime::from_timestamp(t, 0).unwrap();
        let a = accounts(&findings, 0, reader());
        assert_eq!(state_at(&a[0].periods, at(1500)), State::On);
        assert_eq!(state_at(&a[0].periods, at(1501)), State::Off);
        assert_eq!(state_at(&a[0].periods, at(500)), State::Unknown);
    }

    #[test]
    fn actors_whose_changes_all_lie_outside_the_window_are_not_watched() {
        let findings = vec![
            change("inside", 1, Some(500), "bob", Some(true)),
            change("outside", 2, Some(100), "carol", Some(true)),
            change("inside", 3, Some(5000), "bob", Some(false)),
        ];
        let a = accounts(&findings, 0, reader());
        let window = seconds(Some(400), Some(1000));
        let w = watch(&a, Duration::seconds(10), Duration::days(7), window);
        assert_eq!(w.actors, vec![("inside".to_string(), vec![(490, 510)])]);
        assert_eq!(w.actor_changes, vec![1]);
    }

    #[test]
    fn watch_windows_merge() {
        let findings = vec![
            change("adm", 1, Some(1000), "a", Some(true)),
            change("adm", 2, Some(1500), "a", Some(false)),
            change("ADM", 3, Some(9000), "b", Some(true)),
        ];
        let a = accounts(&findings, 0, reader());
        let w = watch(
            &a,
            Duration::seconds(400),
            Duration::days(7),
            Window::default(),
        );
        assert_eq!(
            w.actors,
            vec![("adm".to_string(), vec![(600, 1900), (8600, 9400)])]
        );
        assert_eq!(w.accounts[0].1, vec![(Some(1000), Some(1500))]);
        assert_eq!(w.accounts[1].1, vec![(Some(9000), None)]);
    }
}
