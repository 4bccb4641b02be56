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

/// The order of a raw record's keys (in an ECS document: of its `o365.audit` object).
/// The records, their values and the planted events are the same in every order; only
/// the layout of each line changes, so a benchmark can show what the layout costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyOrder {
    /// `CreationTime`, `Id`, `Operation` first, as the Management Activity API's
    /// records usually begin.
    #[default]
    Generated,
    /// `Id` and `RecordType` first, `CreationTime` third, `UserId` and `ClientIP` after
    /// the workload and outcome, `Parameters` last: `CreationTime` is not at the start
    /// of the line, as in the AuditData of Purview's audit search exports.
    Purview,
    /// Every record's keys in a random order of their own (seeded).
    Shuffled,
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
    /// The order of each record's keys.
    pub key_order: KeyOrder,
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
    /// What the storyline planted, one line each (empty without one).
    pub scenario: Vec<String>,
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
    generate_with(opts, None, out)
}

/// A storyline planted over the archive for the investigation (`--scenarios`): the
/// archive spans `days` days and these happen in it, each described in
/// [`GenSummary::scenario`]:
///
/// - day 2: `it-helpdesk` enables the bypass for the backup tool account
///   `svc-backup` (an allowlist candidate), never disabled;
/// - day 3: `NT AUTHORITY\SYSTEM` disables a bypass on `svc-legacy` that was never
///   seen enabled (it predates the data);
/// - day 4: `adm-jdoe` fails twice to set one on `ceo` (trial and error);
/// - day 5: `adm-jdoe` enables it on `finance.assistant`, then an hour later turns
///   unified audit ingestion off (`Set-AdminAuditLogConfig`); the account's mailbox
///   audit records stop while its sign-ins and SharePoint activity go on;
/// - day 12: `it-helpdesk` disables it again; the mailbox records resume;
/// - day 20: `adm-jdoe` enables it on `svc-scanner`, left open at the end;
/// - day 15: no record at all (a gap day).
///
/// [`Plot::TwoPeriods`] plants instead two closed bypass periods of a few days in a
/// long archive (the year-long benchmark: the context pass needs a few days of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Storyline {
    /// Days the archive spans.
    pub days: u32,
    /// What happens in it.
    pub plot: Plot,
}

/// The events of a [`Storyline`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plot {
    /// Every case of the investigation, in its first 21 days (listed above).
    #[default]
    Investigation,
    /// Two closed bypass periods: `adm-jdoe` enables it on `finance.assistant` at 30 %
    /// of the span and `it-helpdesk` disables it 3 days later; `adm-jdoe` enables it on
    /// `ceo` at 70 % and `it-helpdesk` disables it 4 days later. No gap day.
    TwoPeriods,
}

impl Storyline {
    /// The days of [`Plot::TwoPeriods`]' two enables.
    fn two_periods(&self) -> (i64, i64) {
        let d = i64::from(self.days);
        (d * 3 / 10, d * 7 / 10)
    }
}

/// Accounts of the storyline that have mailbox activity of their own.
const STORY_ACCOUNTS: [&str; 5] = [
    "finance.assistant@contoso.onmicrosoft.com",
    "svc-scanner@contoso.onmicrosoft.com",
    "svc-legacy@contoso.onmicrosoft.com",
    "svc-backup@contoso.onmicrosoft.com",
    "ceo@contoso.onmicrosoft.com",
];

/// One planted change: when (days, hours from the start), who, on whom, and how.
struct Planted {
    at: i64,
    actor: &'static str,
    operation: &'static str,
    target: usize,
    /// `Some(flag)` for the bypass cmdlet; `None` for the audit-ingestion change.
    enable: Option<bool>,
    failed: bool,
    what: &'static str,
}

fn storyline(start: i64, st: Storyline) -> Vec<Planted> {
    let at = |day: i64, hour: i64| start + day * 86_400 + hour * 3600;
    let p = |at, actor, operation, target, enable, failed, what| Planted {
        at,
        actor,
        operation,
        target,
        enable,
        failed,
        what,
    };
    const BYPASS: &str = "Set-MailboxAuditBypassAssociation";
    const ADM: &str = "adm-jdoe@contoso.onmicrosoft.com";
    const HELPDESK: &str = "it-helpdesk@contoso.onmicrosoft.com";
    const SYSTEM: &str = "NT AUTHORITY\\\\SYSTEM (Microsoft.Exchange.ServiceHost)";
    if st.plot == Plot::TwoPeriods {
        let (a, b) = st.two_periods();
        return vec![
            p(
                at(a, 10),
                ADM,
                BYPASS,
                0,
                Some(true),
                false,
                "enable (period 1)",
            ),
            p(
                at(a + 3, 16),
                HELPDESK,
                BYPASS,
                0,
                Some(false),
                false,
                "disable (period 1)",
            ),
            p(
                at(b, 9),
                ADM,
                BYPASS,
                4,
                Some(true),
                false,
                "enable (period 2)",
            ),
            p(
                at(b + 4, 12),
                HELPDESK,
                BYPASS,
                4,
                Some(false),
                false,
                "disable (period 2)",
            ),
        ];
    }
    vec![
        p(
            at(2, 9),
            HELPDESK,
            BYPASS,
            3,
            Some(true),
            false,
            "enable on the backup tool account (allowlist candidate), never disabled",
        ),
        p(
            at(3, 10),
            SYSTEM,
            BYPASS,
            2,
            Some(false),
            false,
            "disable with no enable seen (the bypass predates the data)",
        ),
        p(
            at(4, 14),
            ADM,
            BYPASS,
            4,
            Some(true),
            true,
            "failed attempt",
        ),
        p(
            at(4, 15),
            ADM,
            BYPASS,
            4,
            Some(true),
            true,
            "failed attempt",
        ),
        p(
            at(5, 10),
            ADM,
            BYPASS,
            0,
            Some(true),
            false,
            "enable: the account's mailbox audit records stop",
        ),
        p(
            at(5, 11),
            ADM,
            "Set-AdminAuditLogConfig",
            0,
            None,
            false,
            "audit tampering by the same actor an hour later",
        ),
        p(
            at(12, 16),
            HELPDESK,
            BYPASS,
            0,
            Some(false),
            false,
            "disable: the mailbox audit records resume",
        ),
        p(
            at(20, 8),
            ADM,
            BYPASS,
            1,
            Some(true),
            false,
            "enable, left open at the end of the data",
        ),
    ]
}

/// Whether the storyline's account `i` is bypassed at `t` (its mailbox records stop).
fn story_bypassed(start: i64, st: Storyline, i: usize, t: i64) -> bool {
    let day = |d: i64, h: i64| start + d * 86_400 + h * 3600;
    if st.plot == Plot::TwoPeriods {
        let (a, b) = st.two_periods();
        return match i {
            0 => (day(a, 10)..day(a + 3, 16)).contains(&t),
            4 => (day(b, 9)..day(b + 4, 12)).contains(&t),
            _ => false,
        };
    }
    match i {
        0 => (day(5, 10)..day(12, 16)).contains(&t),
        1 => t >= day(20, 8),
        2 => t < day(3, 10),
        3 => t >= day(2, 9),
        _ => false,
    }
}

/// The gap day of the storyline (no record at all).
const GAP_DAY: i64 = 15;

/// Writes a synthetic archive to `out`, with a storyline planted if asked.
pub fn generate_with(
    opts: &GenOptions,
    story: Option<Storyline>,
    out: &mut dyn Write,
) -> io::Result<GenSummary> {
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    // Its own generator: the records are the same whatever their key order.
    let mut layout = Layout {
        order: opts.key_order,
        rng: fastrand::Rng::with_seed(opts.seed ^ 0x6b65_795f_6f72_6465),
    };
    let mut summary = GenSummary::default();
    let mut line = String::with_capacity(2048);
    let mut buf = Vec::with_capacity(1 << 20);
    // One record every ~2.6 s from 2024-01-01: a year holds about 12 million lines.
    // A storyline stretches the clock so the archive spans its days.
    let start: i64 = 1_704_067_200;
    let mut clock = start;
    let step_scale = story.map_or(1.0, |st| {
        let lines = (opts.size as f64 / 770.0).max(1.0);
        (f64::from(st.days) * 86_400.0 / lines / 2.5).max(1.0)
    });
    let mut planted_story = story.map(|st| storyline(start, st)).unwrap_or_default();
    planted_story.reverse();
    while summary.bytes < opts.size || !planted_story.is_empty() {
        line.clear();
        clock += (rng.i64(1..5) as f64 * step_scale) as i64;
        let investigation = story.is_some_and(|st| st.plot == Plot::Investigation);
        if investigation && (clock - start).div_euclid(86_400) == GAP_DAY {
            continue;
        }
        let mut planted = false;
        let rec = if let Some(p) = planted_story.last().filter(|p| p.at <= clock) {
            let rec = story_record(&mut rng, p);
            summary.scenario.push(format!(
                "{} line {}: {} {} {} -> {}",
                iso(p.at),
                summary.lines + 1,
                p.actor.replace("\\\\", "\\"),
                p.operation,
                match (p.enable, p.failed) {
                    (Some(true), false) => "-AuditBypassEnabled $true",
                    (Some(false), _) => "-AuditBypassEnabled $false",
                    (Some(true), true) => "-AuditBypassEnabled $true (FAILED)",
                    (None, _) => "-UnifiedAuditLogIngestionEnabled $false",
                },
                format_args!("{}: {}", STORY_ACCOUNTS[p.target], p.what)
            ));
            planted = p.operation == "Set-MailboxAuditBypassAssociation";
            planted_story.pop();
            rec
        } else if opts.rate > 0.0 && rng.f64() < opts.rate {
            planted = true;
            bypass(&mut rng, clock)
        } else {
            let mut rec = ordinary(&mut rng, clock);
            if let Some(st) = story
                && rng.u8(0..4) == 0
            {
                // The storyline's accounts live too; a bypassed one leaves no mailbox
                // audit record, but its other activity goes on.
                let i = rng.usize(..STORY_ACCOUNTS.len());
                rec.user = STORY_ACCOUNTS[i].to_string();
                if matches!(rec.record_type, 2 | 50) && story_bypassed(start, st, i, clock) {
                    rec.workload = "SharePoint";
                    rec.operation = "FileAccessed";
                    rec.record_type = 6;
                    rec.extra.clear();
                }
            }
            rec
        };
        match opts.shape {
            GenShape::Ual => rec.write_ual(&mut line, &mut layout),
            GenShape::Ecs => rec.write_ecs(&mut line, &mut layout),
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
    if story.is_some_and(|st| st.plot == Plot::Investigation) {
        summary.scenario.push(format!(
            "{}: gap day, no record at all",
            iso(start + GAP_DAY * 86_400).get(..10).unwrap_or_default()
        ));
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(summary)
}

fn story_record(rng: &mut fastrand::Rng, p: &Planted) -> Rec {
    let target = STORY_ACCOUNTS[p.target].to_string();
    let params = match p.enable {
        Some(flag) => vec![
            ("Identity", target.clone()),
            (
                "AuditBypassEnabled",
                if flag { "True" } else { "False" }.to_string(),
            ),
        ],
        None => vec![("UnifiedAuditLogIngestionEnabled", "False".to_string())],
    };
    Rec {
        time: p.at,
        id: guid(rng),
        workload: "Exchange",
        operation: p.operation,
        record_type: 1,
        status: if p.failed { "Failed" } else { "Succeeded" },
        user: p.actor.to_string(),
        ip: ip(rng),
        object: if p.enable.is_some() {
            target
        } else {
            "Admin Audit Log Settings".to_string()
        },
        params,
        extra: vec![(
            "OriginatingServer",
            format!("AM6PR05MB{} (15.20.7452.028)", rng.u16(1000..9999)),
        )],
    }
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

/// How a record's keys are laid out, with the generator a shuffle draws from.
struct Layout {
    order: KeyOrder,
    rng: fastrand::Rng,
}

/// The keys [`KeyOrder::Purview`] puts first, in order; the rest follow as generated.
const PURVIEW_FIRST: [&str; 12] = [
    "Id",
    "RecordType",
    "CreationTime",
    "Operation",
    "OrganizationId",
    "UserType",
    "UserKey",
    "Workload",
    "ResultStatus",
    "ObjectId",
    "UserId",
    "ClientIP",
];

impl Layout {
    /// Puts `fields` (in the generated order) in this layout's order.
    fn arrange(&mut self, fields: &mut [(&str, String)]) {
        match self.order {
            KeyOrder::Generated => {}
            KeyOrder::Purview => fields.sort_by_key(|(k, _)| {
                let rank = PURVIEW_FIRST.iter().position(|f| f == k);
                // `Parameters` last, the other keys between.
                match (rank, *k == "Parameters") {
                    (Some(r), _) => r,
                    (None, true) => usize::MAX,
                    (None, false) => PURVIEW_FIRST.len(),
                }
            }),
            KeyOrder::Shuffled => self.rng.shuffle(fields),
        }
    }
}

impl Rec {
    /// The raw UAL fields. Parameters are a Name/Value array in a raw record and an
    /// object keyed by name in an ECS document, as Elastic's pipeline makes them.
    fn write_raw_fields(&self, s: &mut String, params_as_object: bool, layout: &mut Layout) {
        let text = |v: &str| format!("\"{v}\"");
        let mut fields: Vec<(&str, String)> = vec![
            ("CreationTime", text(&iso(self.time))),
            ("Id", text(&self.id)),
            ("Operation", text(self.operation)),
            ("OrganizationId", text(ORG)),
            ("RecordType", self.record_type.to_string()),
            ("ResultStatus", text(self.status)),
            ("UserKey", format!("\"1003200{}\"", self.time % 100_000)),
            ("UserType", "2".into()),
            ("Version", "1".into()),
            ("Workload", text(self.workload)),
            ("ClientIP", text(&self.ip)),
            ("ObjectId", text(&self.object)),
            ("UserId", text(&self.user)),
        ];
        for (k, v) in &self.extra {
            fields.push((k, text(v)));
        }
        if !self.params.is_empty() {
            let mut p = String::from(if params_as_object { "{" } else { "[" });
            for (i, (k, v)) in self.params.iter().enumerate() {
                let sep = if i > 0 { "," } else { "" };
                if params_as_object {
                    let _ = write!(p, r#"{sep}"{k}":"{v}""#);
                } else {
                    let _ = write!(p, r#"{sep}{{"Name":"{k}","Value":"{v}"}}"#);
                }
            }
            p.push(if params_as_object { '}' } else { ']' });
            fields.push(("Parameters", p));
        }
        fields.push(("OrganizationName", text("contoso.onmicrosoft.com")));
        fields.push(("AppId", text("")));
        fields.push(("ClientAppId", text("")));
        fields.push(("ExternalAccess", "false".into()));
        layout.arrange(&mut fields);
        for (i, (k, v)) in fields.iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let _ = write!(s, r#"{sep}"{k}":{v}"#);
        }
    }

    fn write_ual(&self, s: &mut String, layout: &mut Layout) {
        s.push('{');
        self.write_raw_fields(s, false, layout);
        s.push('}');
    }

    fn write_ecs(&self, s: &mut String, layout: &mut Layout) {
        let outcome = if self.status == "Failed" {
            "failure"
        } else {
            "success"
        };
        let bare_ip = ualhunt_engine::record::reduce_ip(&self.ip).unwrap_or_default();
        let _ = write!(
            s,
            r#"{{"@timestamp":"{}.000Z","data_stream":{{"dataset":"o365.audit","namespace":"default","type":"logs"}},"event":{{"action":"{}","category":["web"],"dataset":"o365.audit","id":"{}","kind":"event","module":"o365","outcome":"{outcome}","provider":"{}","type":["info"]}},"user":{{"id":"{}"}},"source":{{"ip":"{bare_ip}"}},"organization":{{"id":"{ORG}"}},"o365":{{"audit":{{"#,
            iso(self.time),
            self.operation,
            self.id,
            self.workload,
            self.user
        );
        self.write_raw_fields(s, true, layout);
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
                key_order: Default::default(),
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
    fn every_key_order_writes_the_same_records_in_its_own_layout() {
        let make_in = |shape, key_order| {
            let mut out = Vec::new();
            let opts = GenOptions {
                size: 100_000,
                seed: 11,
                shape,
                rate: 0.05,
                key_order,
            };
            let s = generate(&opts, &mut out).unwrap();
            (String::from_utf8(out).unwrap(), s)
        };
        for shape in [GenShape::Ual, GenShape::Ecs] {
            let (base, summary) = make_in(shape, KeyOrder::Generated);
            // The raw keys in the order written (serde_json's map sorts them).
            let keys = |l: &str| -> Vec<String> {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let raw = if shape == GenShape::Ecs {
                    &v["o365"]["audit"]
                } else {
                    &v
                };
                let text = &l[l.find(r#""audit":{"#).unwrap_or(0)..];
                let mut keys: Vec<String> = raw.as_object().unwrap().keys().cloned().collect();
                keys.sort_by_key(|k| text.find(&format!("\"{k}\":")));
                keys
            };
            for order in [KeyOrder::Purview, KeyOrder::Shuffled] {
                let (text, s) = make_in(shape, order);
                assert_eq!(s.expected_matches, summary.expected_matches);
                assert_eq!(s.match_lines, summary.match_lines);
                assert_eq!(s.lines, summary.lines);
                let mut firsts = std::collections::BTreeSet::new();
                for (a, b) in base.lines().zip(text.lines()) {
                    // The same record: equal as JSON values (serde_json's map is sorted).
                    let (va, vb): (serde_json::Value, serde_json::Value) = (
                        serde_json::from_str(a).unwrap(),
                        serde_json::from_str(b).unwrap(),
                    );
                    assert_eq!(va, vb);
                    let k = keys(b);
                    firsts.insert(k[0].clone());
                    if order == KeyOrder::Purview {
                        assert_eq!(&k[..3], ["Id", "RecordType", "CreationTime"]);
                    }
                }
                assert_ne!(base, text);
                if order == KeyOrder::Shuffled {
                    assert!(firsts.len() > 5, "shuffled first keys: {firsts:?}");
                }
            }
        }
    }

    #[test]
    fn the_storyline_is_planted_in_time_order_with_a_gap_day() {
        let opts = GenOptions {
            size: 200_000,
            seed: 3,
            shape: GenShape::Ual,
            rate: 0.0,
            key_order: Default::default(),
        };
        let mut out = Vec::new();
        let s = generate_with(
            &opts,
            Some(Storyline {
                days: 30,
                plot: Plot::Investigation,
            }),
            &mut out,
        )
        .unwrap();
        assert_eq!(s.scenario.len(), 9, "{:?}", s.scenario);
        assert_eq!(s.expected_matches, 5, "enables and disables that succeed");
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("\"CreationTime\":\"2024-01-16T"), "gap day");
        let mut last = String::new();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let t = v["CreationTime"].as_str().unwrap().to_string();
            assert!(t >= last, "time order");
            last = t;
        }
        assert!(last.as_str() > "2024-01-25", "{last}");
    }

    #[test]
    fn rate_one_plants_every_line() {
        let (_, s) = make(GenShape::Ual, 1.0, 1);
        assert_eq!(s.planted, s.lines);
    }
}
