//! Synthetic audit archives for benchmarks and tests.
//!
//! Not part of the hunt pipeline: `ualhunt generate` and the property tests use it to
//! write realistic Unified Audit Log lines (raw or ECS) with a chosen rate of planted
//! `Set-MailboxAuditBypassAssociation` events from a few actors: some enabling the
//! bypass, some removing it, some failed. Output is a pure function of the options
//! (the seed included), and the summary says how many events the rule should match.

use std::fmt::Write as _;
use std::io::{self, Write};

/// The record shape to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenShape {
    /// Raw Unified Audit Log records (Management Activity API JSON lines).
    Ual,
    /// ECS documents as the Elastic o365 integration writes them.
    Ecs,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenOptions {
    /// Approximate size of the (uncompressed) output in bytes.
    pub size: u64,
    /// Seed of the pseudo-random generator.
    pub seed: u64,
    /// Record shape.
    pub shape: GenShape,
    /// Fraction of lines that are planted bypass events (0.0 to 1.0).
    pub rate: f64,
}

/// What was generated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GenSummary {
    /// Lines written.
    pub lines: u64,
    /// Uncompressed bytes written.
    pub bytes: u64,
    /// Planted `Set-MailboxAuditBypassAssociation` records (all outcomes).
    pub planted: u64,
    /// Planted records the rule must match (successful ones).
    pub expected_matches: u64,
    /// Of those, how many enable the bypass.
    pub enabled: u64,
    /// 1-based line numbers of the records the rule must match.
    pub match_lines: Vec<u64>,
}

const ACTORS: [&str; 3] = [
    "adm-jdoe@contoso.onmicrosoft.com",
    "NT AUTHORITY\\\\SYSTEM (Microsoft.Exchange.ServiceHost)",
    "it-helpdesk@contoso.onmicrosoft.com",
];
const USERS: [&str; 8] = [
    "megan.bowen",
    "adele.vance",
    "alex.wilber",
    "diego.siciliani",
    "grady.archie",
    "isaiah.langer",
    "johanna.lorenz",
    "lee.gu",
];
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)",
    "OneDriveMpc-Transform_Thumbnail/1.0",
];

/// Writes a synthetic archive to `out`.
pub fn generate(opts: &GenOptions, out: &mut dyn Write) -> io::Result<GenSummary> {
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let mut summary = GenSummary::default();
    let mut line = String::with_capacity(2048);
    let mut buf = Vec::with_capacity(1 << 20);
    // One record every ~2.6 s from 2024-01-01: a year holds about 12 million lines.
    let mut clock: i64 = 1_704_067_200;
    while summary.bytes < opts.size {
        line.clear();
        clock += rng.i64(1..5);
        let planted = opts.rate > 0.0 && rng.f64() < opts.rate;
        let rec = if planted {
            bypass(&mut rng, clock)
        } else {
            ordinary(&mut rng, clock)
        };
        match opts.shape {
            GenShape::Ual => rec.write_ual(&mut line),
            GenShape::Ecs => rec.write_ecs(&mut line),
        }
        line.push('\n');
        summary.lines += 1;
        if planted {
            summary.planted += 1;
            if rec.status == "Succeeded" {
                summary.expected_matches += 1;
                summary.match_lines.push(summary.lines);
                if rec
                    .params
                    .iter()
                    .any(|(k, v)| *k == "AuditBypassEnabled" && v == "True")
                {
                    summary.enabled += 1;
                }
            }
        }
        summary.bytes += line.len() as u64;
        buf.extend_from_slice(line.as_bytes());
        if buf.len() >= 1 << 20 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(summary)
}

/// One record, before it is written in a shape.
struct Rec {
    time: i64,
    id: String,
    workload: &'static str,
    operation: &'static str,
    record_type: u32,
    status: &'static str,
    user: String,
    ip: String,
    object: String,
    params: Vec<(&'static str, String)>,
    extra: Vec<(&'static str, String)>,
}

fn guid(rng: &mut fastrand::Rng) -> String {
    let mut s = String::with_capacity(36);
    for (i, n) in [8, 4, 4, 4, 12].iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        for _ in 0..*n {
            s.push(char::from_digit(rng.u32(0..16), 16).unwrap_or('0'));
        }
    }
    s
}

fn ip(rng: &mut fastrand::Rng) -> String {
    match rng.u8(0..4) {
        0 => format!(
            "[2001:db8:{:x}::{:x}]:{}",
            rng.u16(..),
            rng.u16(1..),
            rng.u16(1024..)
        ),
        1 => format!("203.0.113.{}:{}", rng.u8(1..255), rng.u16(1024..)),
        _ => format!("198.51.100.{}", rng.u8(1..255)),
    }
}

fn user(rng: &mut fastrand::Rng) -> String {
    format!(
        "{}@contoso.onmicrosoft.com",
        USERS[rng.usize(..USERS.len())]
    )
}

fn ordinary(rng: &mut fastrand::Rng, time: i64) -> Rec {
    let who = user(rng);
    let mut rec = Rec {
        time,
        id: guid(rng),
        workload: "Exchange",
        operation: "MailItemsAccessed",
        record_type: 50,
        status: "Succeeded",
        user: who.clone(),
        ip: ip(rng),
        object: String::new(),
        params: Vec::new(),
        extra: Vec::new(),
    };
    match rng.u8(0..10) {
        0..=3 => {
            rec.operation =
                ["MailItemsAccessed", "Send", "MoveToDeletedItems", "Update"][rng.usize(..4)];
            rec.record_type = 2;
            rec.extra.push(("MailboxOwnerUPN", who.clone()));
            rec.extra.push(("MailboxGuid", guid(rng)));
            rec.extra.push(("ClientInfoString", AGENTS[1].to_string()));
            rec.extra.push((
                "InternetMessageId",
                format!(
                    "<{}@EURPR05MB{}.eurprd05.prod.outlook.com>",
                    guid(rng),
                    rng.u16(1000..9999)
                ),
            ));
            rec.object = format!(
                "/Inbox/{}",
                ["Invoices", "Projects", "HR", "Travel"][rng.usize(..4)]
            );
        }
        4 => {
            rec.operation =
                ["Set-Mailbox", "New-InboxRule", "Add-MailboxPermission"][rng.usize(..3)];
            rec.record_type = 1;
            rec.user = ACTORS[rng.usize(..ACTORS.len())].to_string();
            rec.object = format!(
                "EURPR05A003.prod.outlook.com/Microsoft Exchange Hosted Organizations/contoso.onmicrosoft.com/{}",
                USERS[rng.usize(..USERS.len())]
            );
            rec.params.push(("Identity", who.clone()));
            rec.params.push(("Force", "True".to_string()));
            rec.extra.push((
                "OriginatingServer",
                format!("AM6PR05MB{} (15.20.7452.028)", rng.u16(1000..9999)),
            ));
        }
        5..=7 => {
            rec.workload = if rng.bool() { "SharePoint" } else { "OneDrive" };
            rec.operation = [
                "FileAccessed",
                "FileModified",
                "FileDownloaded",
                "PageViewed",
            ][rng.usize(..4)];
            rec.record_type = 6;
            let site = format!(
                "https://contoso.sharepoint.com/sites/{}",
                ["Finance", "Legal", "Engineering"][rng.usize(..3)]
            );
            rec.object = format!(
                "{site}/Shared Documents/Q{} report {}.xlsx",
                rng.u8(1..5),
                rng.u16(..)
            );
            rec.extra.push(("SiteUrl", format!("{site}/")));
            rec.extra.push(("SourceFileExtension", "xlsx".to_string()));
            rec.extra
                .push(("UserAgent", AGENTS[rng.usize(..AGENTS.len())].to_string()));
            rec.extra.push(("ListItemUniqueId", guid(rng)));
        }
        _ => {
            rec.workload = "AzureActiveDirectory";
            rec.record_type = 15;
            let ok = rng.u8(0..10) > 0;
            rec.operation = if ok {
                "UserLoggedIn"
            } else {
                "UserLoginFailed"
            };
            rec.status = if ok { "Success" } else { "Failed" };
            rec.object = "00000002-0000-0ff1-ce00-000000000000".to_string();
            rec.extra.push(("ApplicationId", guid(rng)));
            rec.extra
                .push(("ErrorNumber", if ok { "0" } else { "50126" }.to_string()));
            rec.extra.push(("UserAgent", AGENTS[0].to_string()));
        }
    }
    rec
}

fn bypass(rng: &mut fastrand::Rng, time: i64) -> Rec {
    let actor = ACTORS[rng.usize(..ACTORS.len())];
    let target = format!(
        "svc-{}@contoso.onmicrosoft.com",
        ["archiver", "scanner", "crm-sync", "backup"][rng.usize(..4)]
    );
    let roll = rng.u8(0..10);
    Rec {
        time,
        id: guid(rng),
        workload: "Exchange",
        operation: "Set-MailboxAuditBypassAssociation",
        record_type: 1,
        status: if roll < 8 { "Succeeded" } else { "Failed" },
        user: actor.to_string(),
        ip: ip(rng),
        object: target.clone(),
        params: vec![
            ("Identity", target),
            (
                "AuditBypassEnabled",
                if roll < 6 { "True" } else { "False" }.to_string(),
            ),
        ],
        extra: vec![(
            "OriginatingServer",
            format!("AM6PR05MB{} (15.20.7452.028)", rng.u16(1000..9999)),
        )],
    }
}

fn iso(time: i64) -> String {
    chrono::DateTime::from_timestamp(time, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

const ORG: &str = "4a7c8238-5799-4b16-9fc6-9ad8fce5a7d9";

impl Rec {
    /// The raw UAL fields. Parameters are a Name/Value array in a raw record and an
    /// object keyed by name in an ECS document, as Elastic's pipeline makes them.
    fn write_raw_fields(&self, s: &mut String, params_as_object: bool) {
        let _ = write!(
            s,
            r#""CreationTime":"{}","Id":"{}","Operation":"{}","OrganizationId":"{ORG}","RecordType":{},"ResultStatus":"{}","UserKey":"1003200{}","UserType":2,"Version":1,"Workload":"{}","ClientIP":"{}","ObjectId":"{}","UserId":"{}","#,
            iso(self.time),
            self.id,
            self.operation,
            self.record_type,
            self.status,
            self.time % 100_000,
            self.workload,
            self.ip,
            self.object,
            self.user
        );
        for (k, v) in &self.extra {
            let _ = write!(s, r#""{k}":"{v}","#);
        }
        if !self.params.is_empty() {
            s.push_str(if params_as_object {
                r#""Parameters":{"#
            } else {
                r#""Parameters":["#
            });
            for (i, (k, v)) in self.params.iter().enumerate() {
                let sep = if i > 0 { "," } else { "" };
                if params_as_object {
                    let _ = write!(s, r#"{sep}"{k}":"{v}""#);
                } else {
                    let _ = write!(s, r#"{sep}{{"Name":"{k}","Value":"{v}"}}"#);
                }
            }
            s.push_str(if params_as_object { "}," } else { "]," });
        }
        s.push_str(r#""OrganizationName":"contoso.onmicrosoft.com","AppId":"","ClientAppId":"","ExternalAccess":false"#);
    }

    fn write_ual(&self, s: &mut String) {
        s.push('{');
        self.write_raw_fields(s, false);
        s.push('}');
    }

    fn write_ecs(&self, s: &mut String) {
        let outcome = if self.status == "Failed" {
            "failure"
        } else {
            "success"
        };
        let bare_ip = crate::record::reduce_ip(&self.ip).unwrap_or_default();
        let _ = write!(
            s,
            r#"{{"@timestamp":"{}.000Z","data_stream":{{"dataset":"o365.audit","namespace":"default","type":"logs"}},"event":{{"action":"{}","category":["web"],"dataset":"o365.audit","id":"{}","kind":"event","module":"o365","outcome":"{outcome}","provider":"{}","type":["info"]}},"user":{{"id":"{}"}},"source":{{"ip":"{bare_ip}"}},"organization":{{"id":"{ORG}"}},"o365":{{"audit":{{"#,
            iso(self.time),
            self.operation,
            self.id,
            self.workload,
            self.user
        );
        self.write_raw_fields(s, true);
        s.push_str("}}}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(shape: GenShape, rate: f64, seed: u64) -> (Vec<u8>, GenSummary) {
        let mut out = Vec::new();
        let s = generate(
            &GenOptions {
                size: 200_000,
                seed,
                shape,
                rate,
            },
            &mut out,
        )
        .unwrap();
        (out, s)
    }

    #[test]
    fn output_is_deterministic_for_a_seed_and_lines_are_valid_json() {
        for shape in [GenShape::Ual, GenShape::Ecs] {
            let (a, sa) = make(shape, 0.05, 7);
            let (b, _) = make(shape, 0.05, 7);
            assert_eq!(a, b);
            assert_eq!(sa.bytes, a.len() as u64);
            for line in a.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_slice(line).expect("valid JSON");
                assert!(v.is_object());
                assert!(
                    (300..2000).contains(&line.len()),
                    "line of {} bytes",
                    line.len()
                );
            }
            assert!(sa.planted > 0 && sa.expected_matches <= sa.planted);
        }
    }

    #[test]
    fn rate_one_plants_every_line() {
        let (_, s) = make(GenShape::Ual, 1.0, 1);
        assert_eq!(s.planted, s.lines);
    }
}
