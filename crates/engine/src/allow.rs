//! The allowlist: accounts known to be tools (lawful monitoring, a backup product).
//!
//! Place in the flow: loaded from `--allow FILE` into the configuration; the analyses
//! mark findings whose actor or bypassed account it names. A marked finding is kept
//! and shown with the entry's reason, never hidden; only findings that are not allowed
//! make the exit status 0. An entry past its `expires` date no longer applies and is
//! reported.
//!
//! ```toml
//! [[allow]]
//! account = "svc-backup@contoso.com"
//! reason = "Veeam backup for Microsoft 365"
//! owner = "it-ops@contoso.com"
//! expires = 2026-12-31
//! ```

use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The account (an actor or a bypassed mailbox), compared trimmed and ignoring case.
    pub account: String,
    /// Why it is allowed.
    pub reason: String,
    /// Who answers for it.
    #[serde(default)]
    pub owner: Option<String>,
    /// The last day it applies (a TOML date or `YYYY-MM-DD`).
    #[serde(default, deserialize_with = "date")]
    pub expires: Option<NaiveDate>,
}

fn date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Date(toml::value::Datetime),
        Text(String),
    }
    let text = match Either::deserialize(d)? {
        Either::Date(dt) => dt.to_string(),
        Either::Text(s) => s,
    };
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map(Some)
        .map_err(|_| {
            serde::de::Error::custom(format!("expires {text:?} is not a date (YYYY-MM-DD)"))
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowFile {
    #[serde(default)]
    allow: Vec<Entry>,
}

/// The loaded allowlist, judged on one day.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    /// Every entry, in file order.
    pub entries: Vec<Entry>,
    /// The day expiry is judged on (the day of the run).
    pub today: NaiveDate,
    keys: Vec<String>,
}

/// An allowlist that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("allowlist {path}: {message}")]
pub struct AllowError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Allowlist {
    /// Reads an allowlist file.
    pub fn load(path: &Path, today: NaiveDate) -> Result<Allowlist, AllowError> {
        let err = |message: String| AllowError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Allowlist::parse(&text, today).map_err(err)
    }

    /// Parses allowlist text.
    pub fn parse(text: &str, today: NaiveDate) -> Result<Allowlist, String> {
        let file: AllowFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(e) = file.allow.iter().find(|e| key(&e.account).is_empty()) {
            return Err(format!(
                "an entry has an empty account (reason {:?})",
                e.reason
            ));
        }
        let keys = file.allow.iter().map(|e| key(&e.account)).collect();
        Ok(Allowlist {
            entries: file.allow,
            today,
            keys,
        })
    }

    /// An allowlist of these entries, judged on `today`.
    pub fn from_entries(entries: Vec<Entry>, today: NaiveDate) -> Allowlist {
        let keys = entries.iter().map(|e| key(&e.account)).collect();
        Allowlist {
            entries,
            today,
            keys,
        }
    }

    /// The index of the first entry in force that names `account`.
    pub fn find(&self, account: &str) -> Option<usize> {
        // No list (the usual run): no key to build for each event.
        if self.keys.is_empty() {
            return None;
        }
        let k = key(account);
        self.keys
            .iter()
            .enumerate()
            .find(|(i, e)| **e == k && !self.is_expired(*i))
            .map(|(i, _)| i)
    }

    /// Whether entry `i` has expired.
    pub fn is_expired(&self, i: usize) -> bool {
        self.entries[i].expires.is_some_and(|d| d < self.today)
    }

    /// The entries that have expired.
    pub fn expired(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.is_expired(i))
            .collect()
    }
}

/// How account names are compared: trimmed, ASCII and Unicode lower case.
pub fn key(account: &str) -> String {
    account.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[[allow]]
account = "Svc-Backup@Contoso.com "
reason = "backup product"
owner = "it-ops"
expires = 2030-01-01

[[allow]]
account = "old-tool@contoso.com"
reason = "retired"
expires = "2020-06-30"

[[allow]]
account = "monitor@contoso.com"
reason = "lawful monitoring"
"#;

    #[test]
    fn entries_match_ignoring_case_until_they_expire() {
        let today = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let a = Allowlist::parse(TEXT, today).unwrap();
        assert_eq!(a.find("svc-backup@contoso.com"), Some(0));
        assert_eq!(a.find("MONITOR@contoso.com"), Some(2));
        assert_eq!(a.find("old-tool@contoso.com"), None, "expired");
        assert_eq!(a.expired(), vec![1]);
        assert_eq!(a.find("someone@contoso.com"), None);
        let later = Allowlist::parse(TEXT, NaiveDate::from_ymd_opt(2030, 1, 2).unwrap()).unwrap();
        assert_eq!(later.find("svc-backup@contoso.com"), None);
    }

    #[test]
    fn bad_files_say_why() {
        let today = NaiveDate::default();
        assert!(
            Allowlist::parse("[[allow]]\naccount='a'\n", today).is_err(),
            "no reason"
        );
        let e = Allowlist::parse(
            "[[allow]]\naccount='a'\nreason='r'\nexpires='soon'\n",
            today,
        )
        .unwrap_err();
        assert!(e.contains("not a date"), "{e}");
        assert!(Allowlist::parse("[[allow]]\naccount=' '\nreason='r'\n", today).is_err());
        assert!(Allowlist::parse("[[allow]]\naccount='a'\nreason='r'\ncolour=1\n", today).is_err());
    }
}
