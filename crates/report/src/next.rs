//! What a responder does next about a bypassed account: confirm the live state,
//! remove the bypass, review the span the mailbox audit did not record. The table and
//! the HTML report both say it, from here.
//!
//! The steps are plain text holding names from the archive; each output escapes them
//! for its medium. A name is quoted for PowerShell here (single quotes, its quote
//! characters doubled), so a pasted command names that mailbox and nothing more.

use ualhunt_engine::analysis::Window;
use ualhunt_engine::analysis::bypass::{Account, Period, State};
use ualhunt_engine::findings::At;

use crate::time::{open_as_of, rfc3339, still_open_at};

/// The cmdlet that shows an account's bypass as it is now.
pub const GET: &str = "Get-MailboxAuditBypassAssociation";
/// The cmdlet that removes it.
pub const SET: &str = "Set-MailboxAuditBypassAssociation";

/// At most this many unaudited spans are named per account.
const SPANS_MAX: usize = 3;

/// A PowerShell single-quoted string: `'`, and the typographic quotes PowerShell also
/// reads as one (U+2018..U+201B), are doubled.
pub fn ps_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// One step: what to do, and the command that does it, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What to do, in words.
    pub what: String,
    /// The PowerShell command (Exchange Online), when there is one.
    pub command: Option<String>,
}

fn step(what: impl Into<String>, command: Option<String>) -> Step {
    Step {
        what: what.into(),
        command,
    }
}

/// The span of one period, `from – to`: a period open at the end of the data ends
/// `now`; under `--until`, one open at the window's end ends `still open at T (--until)`
/// (the report speaks of the state there, not of today's).
fn span(p: &Period, window: &Window) -> String {
    let from = match (p.predates_data, &p.start) {
        (false, Some(t)) => rfc3339(t),
        _ => "before the data".to_string(),
    };
    let to = match (p.open, &p.end, open_as_of(p, window)) {
        (false, Some(t), _) => rfc3339(t),
        (_, _, Some(until)) => still_open_at(&until),
        _ => "now".to_string(),
    };
    format!("{from} – {to}")
}

/// The steps for a bypassed account, in order. `name`: the account as the records
/// spell it; `window`: the run's `--since`/`--until`.
pub fn bypass(account: &Account, name: &str, window: &Window) -> Vec<Step> {
    steps(account, name, None, window)
}

/// The steps for one change of an account: the span to review is the period the change
/// opened or closed (every period when it is neither).
pub fn change(account: &Account, name: &str, at: At, window: &Window) -> Vec<Step> {
    let period = account
        .periods
        .iter()
        .find(|p| p.start_at == Some(at) || p.end_at == Some(at));
    steps(account, name, period, window)
}

fn steps(account: &Account, name: &str, period: Option<&Period>, window: &Window) -> Vec<Step> {
    let id = ps_quote(name);
    let get = format!("{GET} -Identity {id}");
    let remove = format!("{SET} -Identity {id} -AuditBypassEnabled $false");
    let mut steps = Vec::new();
    match account.state_at_end {
        State::On if account.allowed.is_some() => {
            steps.push(step(
                "allowlisted: confirm with its owner that the bypass is still needed",
                Some(get),
            ));
        }
        State::On => {
            steps.push(step("confirm it is still on", Some(get)));
            steps.push(step("remove the bypass", Some(remove)));
        }
        State::Off => steps.push(step("confirm it is still off", Some(get))),
        State::Unknown => steps.push(step("see whether it is on now", Some(get))),
    }
    let spans: Vec<String> = match period {
        Some(p) => vec![span(p, window)],
        None => account
            .periods
            .iter()
            .rev()
            .map(|p| span(p, window))
            .collect(),
    };
    if !spans.is_empty() {
        let mut what = format!(
            "review what it did unaudited, {}",
            spans
                .iter()
                .take(SPANS_MAX)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        if spans.len() > SPANS_MAX {
            what.push_str(&format!(" (+{} earlier spans)", spans.len() - SPANS_MAX));
        }
        steps.push(step(what, None));
    }
    steps
}

/// The steps on one line: `what: command; …`.
pub fn line(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|st| match &st.command {
            Some(cmd) => format!("{}: {cmd}", st.what),
            None => st.what.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The name a command should use for an account: its first spelling in the records.
pub fn spelled(account: &Account) -> &str {
    account
        .spellings
        .first()
        .map_or(account.identity.as_str(), String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u64) -> At {
        At {
            line,
            ..At::default()
        }
    }

    fn period(from: &str, to: Option<&str>, start: u64, end: u64) -> Period {
        let t = |s: &str| Some(s.parse().unwrap());
        Period {
            start: t(from),
            end: to.and_then(t),
            open: to.is_none(),
            predates_data: false,
            set_by: None,
            ended_by: None,
            start_at: Some(at(start)),
            end_at: to.map(|_| at(end)),
            mailbox_audit: None,
        }
    }

    /// A change's review names the period it opened or closed; the account's, all.
    #[test]
    fn a_change_reviews_its_own_period() {
        let account = Account {
            identity: "o'brien@contoso.com".into(),
            spellings: vec!["O'Brien@contoso.com".into()],
            state_at_end: State::On,
            allowed: None,
            changes: Vec::new(),
            periods: vec![
                period("2024-03-01T09:00:00Z", Some("2024-03-02T09:00:00Z"), 1, 2),
                period("2024-03-05T09:00:00Z", None, 3, 0),
            ],
            blind_spot: None,
        };
        let name = spelled(&account);
        let all = line(&bypass(&account, name, &Window::default()));
        assert_eq!(
            all,
            "confirm it is still on: Get-MailboxAuditBypassAssociation -Identity 'O''Brien@contoso.com'; \
             remove the bypass: Set-MailboxAuditBypassAssociation -Identity 'O''Brien@contoso.com' \
             -AuditBypassEnabled $false; review what it did unaudited, 2024-03-05T09:00:00Z – now, \
             2024-03-01T09:00:00Z – 2024-03-02T09:00:00Z"
        );
        let closed = line(&change(&account, name, at(2), &Window::default()));
        assert!(
            closed.ends_with("unaudited, 2024-03-01T09:00:00Z – 2024-03-02T09:00:00Z"),
            "{closed}"
        );
        let opened = line(&change(&account, name, at(3), &Window::default()));
        assert!(
            opened.ends_with("unaudited, 2024-03-05T09:00:00Z – now"),
            "{opened}"
        );
    }

    /// Under `--until` a period open at the window's end is open as of then, not now;
    /// one begun after the window is still open at the end of the data.
    #[test]
    fn an_open_period_under_until_is_open_at_until_not_now() {
        let account = Account {
            identity: "a@contoso.com".into(),
            spellings: vec!["a@contoso.com".into()],
            state_at_end: State::On,
            allowed: None,
            changes: Vec::new(),
            periods: vec![period("2024-03-05T09:00:00Z", None, 3, 0)],
            blind_spot: None,
        };
        let window = |until: &str| Window {
            since: None,
            until: Some(until.parse().unwrap()),
        };
        let before = line(&bypass(
            &account,
            "a@contoso.com",
            &window("2024-03-10T00:00:00Z"),
        ));
        assert!(
            before.ends_with(
                "unaudited, 2024-03-05T09:00:00Z – still open at 2024-03-10T00:00:00Z (--until)"
            ),
            "{before}"
        );
        let after = line(&change(
            &account,
            "a@contoso.com",
            at(3),
            &window("2024-03-05T09:00:00Z"),
        ));
        assert!(after.ends_with("2024-03-05T09:00:00Z – now"), "{after}");
    }

    #[test]
    fn names_are_quoted_for_powershell() {
        assert_eq!(ps_quote("a@b.com"), "'a@b.com'");
        assert_eq!(ps_quote("o'brien"), "'o''brien'");
        assert_eq!(ps_quote("x\u{2019}; rm"), "'x\u{2019}\u{2019}; rm'");
        assert_eq!(ps_quote("$(evil)"), "'$(evil)'");
    }
}
