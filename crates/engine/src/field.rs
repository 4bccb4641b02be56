//! The ECS fields of an audit record: the leaf both sides of a rule meet at.
//!
//! Place in the flow: `rule` resolves the ECS names a query or an evidence list uses
//! into [`Field`]s once, at compile time (through `ualhunt_query`'s `Field` trait,
//! implemented here); `record` answers them for a parsed record through [`Fields`].
//! It depends on nothing else in the crate but the names of the fields the pipeline
//! derives (`enrich`), so the record view and the rule languages do not depend on each
//! other.

pub use ualhunt_query::{Fields, Literal, Spelling, ValueType};

use crate::enrich::Derived;

/// A field a rule or a report can ask for, resolved from its ECS name once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `event.dataset` or `data_stream.dataset` (the first one named).
    Dataset(DatasetName),
    /// `event.provider` (raw: `Workload`).
    Provider,
    /// `event.action` (raw: `Operation`).
    Action,
    /// `event.outcome` (raw: `ResultStatus`, mapped).
    Outcome,
    /// `user.id` (raw: `UserId`), the actor.
    UserId,
    /// `@timestamp` (raw: `CreationTime`).
    Timestamp,
    /// `event.id` (raw: `Id`).
    EventId,
    /// `organization.id` (raw: `OrganizationId`).
    OrganizationId,
    /// `source.ip` (raw: first of `ClientIPAddress`, `ClientIP`, `ActorIpAddress`, reduced).
    SourceIp,
    /// `event.code` (raw: the `RecordType` number, named).
    Code,
    /// `event.category` (raw: `web`, and more by record type and operation).
    Category,
    /// `user.email` (raw: `UserId` when it is `name@domain`).
    UserEmail,
    /// `user.name` (raw: the part of such a `UserId` before `@`).
    UserName,
    /// `user.domain` (raw: the part after `@`).
    UserDomain,
    /// `user_agent.original` (raw: `UserAgent`, else `ExtendedProperties` `UserAgent`).
    UserAgent,
    /// `rule.name` (raw: a Security & Compliance alert's `Name`, a DLP record's
    /// `PolicyName` and the names of its rules).
    RuleName,
    /// `o365.audit.<path>`: the raw record's own fields.
    Audit(String),
    /// A field the pipeline derives (`user_agent.name`, `source.geo.country_name`, …;
    /// see `enrich`).
    Derived(Derived),
    /// Any other ECS field; raw records have none.
    Other(String),
}

/// Which of the two dataset field names a query used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetName {
    /// `event.dataset`
    Event,
    /// `data_stream.dataset`
    DataStream,
}

/// The dataset every raw audit record belongs to.
pub const O365_AUDIT: &str = "o365.audit";

impl Field {
    /// How this field's values compare (see [`ecs_type`]).
    pub fn value_type(&self) -> ValueType {
        // As `ecs_type(&self.name())`, without writing the name: the evaluators ask
        // for every field read.
        match self {
            Field::Timestamp => ValueType::Date,
            Field::SourceIp => ValueType::Ip,
            Field::Audit(path) => match path.as_str() {
                "OperationCount" => ValueType::Number,
                _ => ValueType::Keyword,
            },
            Field::Derived(d) => ecs_type(d.name()),
            Field::Other(name) => ecs_type(name),
            Field::Dataset(_)
            | Field::Provider
            | Field::Action
            | Field::Outcome
            | Field::UserId
            | Field::EventId
            | Field::OrganizationId
            | Field::Code
            | Field::Category
            | Field::UserEmail
            | Field::UserName
            | Field::UserDomain
            | Field::UserAgent
            | Field::RuleName => ValueType::Keyword,
        }
    }

    /// Resolves an ECS field name.
    pub fn parse(name: &str) -> Field {
        match name {
            "event.dataset" => Field::Dataset(DatasetName::Event),
            "data_stream.dataset" => Field::Dataset(DatasetName::DataStream),
            "event.provider" => Field::Provider,
            "event.action" => Field::Action,
            "event.outcome" => Field::Outcome,
            "user.id" => Field::UserId,
            "@timestamp" => Field::Timestamp,
            "event.id" => Field::EventId,
            "organization.id" => Field::OrganizationId,
            "source.ip" => Field::SourceIp,
            "event.code" => Field::Code,
            "event.category" => Field::Category,
            "user.email" => Field::UserEmail,
            "user.name" => Field::UserName,
            "user.domain" => Field::UserDomain,
            "user_agent.original" => Field::UserAgent,
            "rule.name" => Field::RuleName,
            _ => match name.strip_prefix("o365.audit.") {
                Some(rest) if !rest.is_empty() => Field::Audit(rest.to_string()),
                _ => match Derived::parse(name) {
                    Some(d) => Field::Derived(d),
                    None => Field::Other(name.to_string()),
                },
            },
        }
    }

    /// The ECS name of the field.
    pub fn name(&self) -> String {
        match self {
            Field::Dataset(DatasetName::Event) => "event.dataset".into(),
            Field::Dataset(DatasetName::DataStream) => "data_stream.dataset".into(),
            Field::Provider => "event.provider".into(),
            Field::Action => "event.action".into(),
            Field::Outcome => "event.outcome".into(),
            Field::UserId => "user.id".into(),
            Field::Timestamp => "@timestamp".into(),
            Field::EventId => "event.id".into(),
            Field::OrganizationId => "organization.id".into(),
            Field::SourceIp => "source.ip".into(),
            Field::Code => "event.code".into(),
            Field::Category => "event.category".into(),
            Field::UserEmail => "user.email".into(),
            Field::UserName => "user.name".into(),
            Field::UserDomain => "user.domain".into(),
            Field::UserAgent => "user_agent.original".into(),
            Field::RuleName => "rule.name".into(),
            Field::Audit(rest) => format!("o365.audit.{rest}"),
            Field::Derived(d) => d.name().to_string(),
            Field::Other(name) => name.clone(),
        }
    }

    /// Whether a value of this field appears byte for byte in the line of every record
    /// shape (so it can serve as a prefilter literal). Mapped fields do not: a raw record
    /// has no `o365.audit` dataset string and spells success `Succeeded`.
    pub fn is_verbatim(&self) -> bool {
        !matches!(
            self,
            Field::Dataset(_)
                | Field::Outcome
                | Field::Timestamp
                | Field::SourceIp
                | Field::Code
                | Field::Category
                | Field::Derived(_)
        )
    }

    /// The bytes every record holding a value of this field contains, whatever the
    /// value: the last name of its path, for a field read from the record's own keys or
    /// `Name`/`Value` lists (`o365.audit.*`, but `ModifiedProperties`, whose names the
    /// pipeline rewrites, a string `Parameters`' `_raw` and the `flattened` views) or
    /// found only in ECS documents (any other field raw records lack, such as
    /// `host.name`); a derived field's own (`enrich::Derived::key_literal`). `None` for
    /// mapped fields, and for a name a JSON writer might escape.
    pub fn key_literal(&self) -> Option<String> {
        let path = match self {
            Field::Derived(d) => return d.key_literal(),
            Field::Audit(path) if !path.starts_with("ModifiedProperties") => path,
            Field::Other(name) => name,
            _ => return None,
        };
        if path
            .split('.')
            .any(|name| name == "flattened" || name.is_empty())
        {
            return None;
        }
        let last = path.rsplit('.').next()?;
        let plain = last
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        (plain && last != "_raw").then(|| last.to_string())
    }
}

/// The query languages see [`Field`] through `ualhunt_query`'s trait: names resolve as
/// above, values compare by their ECS type ([`ecs_type`]), and a value is spelled in a
/// record's bytes as every record shape writes it.
impl ualhunt_query::Field for Field {
    fn parse(name: &str) -> Field {
        Field::parse(name)
    }

    fn name(&self) -> String {
        Field::name(self)
    }

    fn value_type(&self) -> ValueType {
        Field::value_type(self)
    }

    /// The byte strings one of which every record whose field has `value` holds, in
    /// every record shape (`None`: no such set). A verbatim field gives the value; an
    /// `event.code` gives its `RecordType` number (or its name, when the pipeline's
    /// table has no number for it); an action the pipeline renames gives the raw
    /// operation.
    fn spellings(&self, value: &str) -> Option<Vec<Spelling>> {
        match self {
            // A name of the pipeline's table: every record shape carries the number
            // (raw records and exports as `RecordType`, Elastic's documents as
            // `o365.audit.RecordType`, from which the pipeline derives the name), read
            // per record (marked with [`RECORD_TYPE_MARK`], not searched for); a record
            // whose `RecordType` cannot be read is a candidate anyway. A name the table
            // does not know has no number: records carry the name itself.
            Field::Code => Some(vec![match record_type_number(value) {
                Some(number) => Spelling::Exact(format!("{RECORD_TYPE_MARK}{number}")),
                None => Spelling::Text(value.to_string()),
            }]),
            // The pipeline files a record under `authentication` for its type alone
            // (`AzureActiveDirectoryStsLogon`, `categories` in `record`), so such a
            // record carries that `RecordType` in every shape. Other categories depend
            // on the operation too, or on nothing: no spelling.
            Field::Category => {
                let number =
                    (value == "authentication").then(|| record_type_number(SIGN_IN_CODE))??;
                Some(vec![Spelling::Exact(format!("{RECORD_TYPE_MARK}{number}"))])
            }
            // A record's operation, whole ([`Literal::Operation`]): the scan reads it
            // from each line's `Operation` key instead of searching for it. A renamed
            // action gives the raw operation, and the name itself (a raw record may
            // carry it). A value a writer may escape is searched as text.
            Field::Action => Some(
                std::iter::once(value)
                    .chain(raw_operation(value))
                    .map(operation_spelling)
                    .collect(),
            ),
            // The raw key itself: a record's operation, whole, as above.
            Field::Audit(path) if path == "Operation" => Some(vec![operation_spelling(value)]),
            // A name the parser takes from the agent's text is in the record's bytes.
            Field::Derived(Derived::AgentName) => crate::enrich::user_agent::name_spellings(value)
                .map(|texts| texts.into_iter().map(Spelling::Text).collect()),
            f if f.is_verbatim() => Some(vec![Spelling::Text(value.to_string())]),
            _ => None,
        }
    }

    fn is_verbatim(&self) -> bool {
        Field::is_verbatim(self)
    }

    fn key_literal(&self) -> Option<String> {
        Field::key_literal(self)
    }

    /// `event.provider`, but `OneDrive` and `SharePoint`: a workload writes most records
    /// of an archive (`Exchange`), or only records of the actions rules name with it
    /// (a Teams operation is Teams'), so its name excludes next to nothing. OneDrive and
    /// SharePoint write the same operations (`FileDownloaded`, `FileAccessed`,
    /// `FileMalwareDetected`, …): a rule naming one of them excludes the other's
    /// records by it.
    fn is_broad_literal(&self, literal: &str) -> bool {
        *self == Field::Provider && !SHARED_OPERATIONS.contains(&literal)
    }
}

/// The workloads that write the same operations, so that their names are conjuncts
/// worth checking (see `is_broad_literal`).
const SHARED_OPERATIONS: [&str; 2] = ["OneDrive", "SharePoint"];

/// The `event.code` of sign-ins, the one the pipeline files under `authentication`.
pub(crate) const SIGN_IN_CODE: &str = "AzureActiveDirectoryStsLogon";

/// How a `RecordType` literal is written among a query's literal strings: this prefix
/// (a NUL byte, which no text literal holds) and the number. The scan reads such a
/// record's `RecordType` as the coverage tally does instead of searching for it.
pub const RECORD_TYPE_MARK: &str = "\u{0}RecordType=";

/// How a record whose operation is `name` spells it: the operation, read whole
/// ([`Literal::operation`]), when every writer writes the name as it is; else its text.
fn operation_spelling(name: &str) -> Spelling {
    match is_plain_operation(name) {
        true => Spelling::Exact(Literal::operation(name)),
        false => Spelling::Text(name.to_string()),
    }
}

/// Whether an operation's name is written the same by every JSON writer, so that the
/// bytes of a record's `Operation` string are the name itself: printable ASCII none of
/// them escapes (a name with anything else is searched for as text, in pieces).
fn is_plain_operation(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && !b"\"\\/<>&'".contains(&b))
}

/// A literal string as a person reads it: quoted text, quoted text `(any case)`, or
/// `RecordType 11`.
pub fn show_literal(literal: &str) -> String {
    match (
        marked_record_type(literal),
        ualhunt_query::Literal::parse(literal),
    ) {
        (Some(n), _) => format!("RecordType {n}"),
        (
            None,
            ualhunt_query::Literal::AnyCase(text) | ualhunt_query::Literal::OperationAnyCase(text),
        ) => format!("{text:?} (any case)"),
        (None, ualhunt_query::Literal::Exact(text) | ualhunt_query::Literal::Operation(text)) => {
            format!("{text:?}")
        }
    }
}

/// The `RecordType` number of a literal string written with [`RECORD_TYPE_MARK`].
pub fn marked_record_type(literal: &str) -> Option<u16> {
    literal.strip_prefix(RECORD_TYPE_MARK)?.parse().ok()
}

/// `RecordType` numbers and the `event.code` names Elastic's o365 ingest pipeline gives
/// them (its RecordType table, verbatim); a number not listed gets no `event.code`.
pub const RECORD_TYPES: &[(u16, &str)] = &[
    (1, "ExchangeAdmin"),
    (2, "ExchangeItem"),
    (3, "ExchangeItemGroup"),
    (4, "SharePoint"),
    (6, "SharePointFileOperation"),
    (7, "OneDrive"),
    (8, "AzureActiveDirectory"),
    (9, "AzureActiveDirectoryAccountLogon"),
    (10, "DataCenterSecurityCmdlet"),
    (11, "ComplianceDLPSharePoint"),
    (12, "Sway"),
    (13, "ComplianceDLPExchange"),
    (14, "SharePointSharingOperation"),
    (15, "AzureActiveDirectoryStsLogon"),
    (16, "SkypeForBusinessPSTNUsage"),
    (17, "SkypeForBusinessUsersBlocked"),
    (18, "SecurityComplianceCenterEOPCmdlet"),
    (19, "ExchangeAggregatedOperation"),
    (20, "PowerBIAudit"),
    (21, "CRM"),
    (22, "Yammer"),
    (23, "SkypeForBusinessCmdlets"),
    (24, "Discovery"),
    (25, "MicrosoftTeams"),
    (28, "ThreatIntelligence"),
    (29, "MailSubmission"),
    (30, "MicrosoftFlow"),
    (31, "AeD"),
    (32, "MicrosoftStream"),
    (33, "ComplianceDLPSharePointClassification"),
    (34, "ThreatFinder"),
    (35, "Project"),
    (36, "SharePointListOperation"),
    (37, "SharePointCommentOperation"),
    (38, "DataGovernance"),
    (39, "Kaizala"),
    (40, "SecurityComplianceAlerts"),
    (41, "ThreatIntelligenceUrl"),
    (42, "SecurityComplianceInsights"),
    (43, "MIPLabel"),
    (44, "WorkplaceAnalytics"),
    (45, "PowerAppsApp"),
    (46, "PowerAppsPlan"),
    (47, "ThreatIntelligenceAtpContent"),
    (48, "LabelContentExplorer"),
    (49, "TeamsHealthcare"),
    (50, "ExchangeItemAggregated"),
    (51, "HygieneEvent"),
    (52, "DataInsightsRestApiAudit"),
    (53, "InformationBarrierPolicyApplication"),
    (54, "SharePointListItemOperation"),
    (55, "SharePointContentTypeOperation"),
    (56, "SharePointFieldOperation"),
    (57, "MicrosoftTeamsAdmin"),
    (58, "HRSignal"),
    (59, "MicrosoftTeamsDevice"),
    (60, "MicrosoftTeamsAnalytics"),
    (61, "InformationWorkerProtection"),
    (62, "Campaign"),
    (63, "DLPEndpoint"),
    (64, "AirInvestigation"),
    (65, "Quarantine"),
    (66, "MicrosoftForms"),
    (67, "ApplicationAudit"),
    (68, "ComplianceSupervisionExchange"),
    (69, "CustomerKeyServiceEncryption"),
    (70, "OfficeNative"),
    (71, "MipAutoLabelSharePointItem"),
    (72, "MipAutoLabelSharePointPolicyLocation"),
    (73, "MicrosoftTeamsShifts"),
    (75, "MipAutoLabelExchangeItem"),
    (76, "CortanaBriefing"),
    (78, "WDATPAlerts"),
    (82, "SensitivityLabelPolicyMatch"),
    (83, "SensitivityLabelAction"),
    (84, "SensitivityLabeledFileAction"),
    (85, "AttackSim"),
    (86, "AirManualInvestigation"),
    (87, "SecurityComplianceRBAC"),
    (88, "UserTraining"),
    (89, "AirAdminActionInvestigation"),
    (90, "MSTIC"),
    (91, "PhysicalBadgingSignal"),
    (93, "AipDiscover"),
    (94, "AipSensitivityLabelAction"),
    (95, "AipProtectionAction"),
    (96, "AipFileDeleted"),
    (97, "AipHeartBeat"),
    (98, "MCASAlerts"),
    (99, "OnPremisesFileShareScannerDlp"),
    (100, "OnPremisesSharePointScannerDlp"),
    (101, "ExchangeSearch"),
    (102, "SharePointSearch"),
    (103, "PrivacyInsights"),
    (105, "MyAnalyticsSettings"),
    (106, "SecurityComplianceUserChange"),
    (107, "ComplianceDLPExchangeClassification"),
    (109, "MipExactDataMatch"),
    (113, "MS365DCustomDetection"),
    (147, "CoreReportingSettings"),
    (148, "ComplianceConnector"),
    (174, "DataShareOperation"),
    (181, "EduDataLakeDownloadOperation"),
];

/// The `event.code` name of a `RecordType` value: a number of the pipeline's table, or
/// a name of it (PowerShell writes the enum name).
pub fn record_type_name(value: &str) -> Option<&'static str> {
    let v = value.trim();
    match v.parse::<u16>() {
        Ok(n) => RECORD_TYPES
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, name)| *name),
        Err(_) => RECORD_TYPES
            .iter()
            .find(|(_, name)| *name == v)
            .map(|(_, name)| *name),
    }
}

/// The `RecordType` number of an `event.code` name.
pub fn record_type_number(name: &str) -> Option<u16> {
    RECORD_TYPES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(k, _)| *k)
}

/// Operations the pipeline renames in `event.action` (Entra ID record type 8, Teams
/// 25): the ECS name and the raw `Operation`.
pub const RENAMED_ACTIONS: [(&str, &str, &str); 6] = [
    ("AzureActiveDirectory", "Add user.", "added-user-account"),
    (
        "AzureActiveDirectory",
        "Update user.",
        "modified-user-account",
    ),
    (
        "AzureActiveDirectory",
        "Delete user.",
        "deleted-user-account",
    ),
    ("MicrosoftTeams", "TeamCreated", "added-group-account-to"),
    ("MicrosoftTeams", "MemberAdded", "added-users-to-group"),
    ("MicrosoftTeams", "Delete user.", "deleted-user-account"),
];

/// The raw `Operation` an ECS `event.action` was renamed from, if it was.
pub(crate) fn raw_operation(action: &str) -> Option<&'static str> {
    RENAMED_ACTIONS
        .iter()
        .find(|(_, _, ecs)| *ecs == action)
        .map(|(_, raw, _)| *raw)
}

/// The type of the field with this ECS name, as Elastic's index mapping types it: a hand table of the non-keyword ECS
/// fields (types from ECS 9.4) that Microsoft 365 data and Elastic's M365 rules use,
/// plus the integration's one numeric `o365.audit` field. Everything else, all other
/// `o365.audit.*` fields included (`Parameters.*` too), is a keyword.
pub fn ecs_type(name: &str) -> ValueType {
    match name {
        "@timestamp" | "event.created" | "event.ingested" | "event.start" | "event.end" => {
            ValueType::Date
        }
        "source.ip"
        | "client.ip"
        | "destination.ip"
        | "server.ip"
        | "host.ip"
        | "related.ip"
        | "observer.ip"
        | "network.forwarded_ip"
        | "source.nat.ip"
        | "client.nat.ip"
        | "destination.nat.ip"
        | "server.nat.ip" => ValueType::Ip,
        "source.port"
        | "client.port"
        | "destination.port"
        | "server.port"
        | "url.port"
        | "source.bytes"
        | "client.bytes"
        | "destination.bytes"
        | "server.bytes"
        | "network.bytes"
        | "network.packets"
        | "source.as.number"
        | "client.as.number"
        | "destination.as.number"
        | "server.as.number"
        | "event.duration"
        | "event.severity"
        | "event.sequence"
        | "event.risk_score"
        | "event.risk_score_norm"
        | "file.size"
        | "email.attachments.file.size"
        | "o365.audit.OperationCount" => ValueType::Number,
        "file.code_signature.exists"
        | "file.code_signature.trusted"
        | "file.code_signature.valid"
        | "user.entity.attributes.mfa_enabled"
        | "user.entity.attributes.managed" => ValueType::Boolean,
        _ => ValueType::Keyword,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `authentication` is the pipeline's category of one record type, so a record of
    /// it carries that `RecordType`; no other category names a spelling.
    #[test]
    fn the_authentication_category_is_spelled_by_its_record_type() {
        use ualhunt_query::Field as _;
        let mark = format!("{RECORD_TYPE_MARK}15");
        assert_eq!(
            Field::Category.spellings("authentication"),
            Some(vec![Spelling::Exact(mark.clone())])
        );
        for other in [
            "web",
            "iam",
            "email",
            "file",
            "configuration",
            "Authentication",
        ] {
            assert_eq!(Field::Category.spellings(other), None, "{other}");
        }
        // A rule on error codes of sign-ins reads the record type instead of searching
        // for the codes, which it checks on those records.
        let q = crate::rule::Query::Kql(
            crate::rule::kql::Query::parse(
                "event.dataset:o365.audit and event.provider:AzureActiveDirectory and \
                 event.category:authentication and o365.audit.ErrorNumber:(50053 or 50126)",
            )
            .unwrap(),
        );
        let searched = q.searched(&Default::default());
        assert_eq!(searched.literals, Some(vec![mark]));
        assert!(
            searched
                .conjuncts
                .contains(&vec!["50053".to_string(), "50126".to_string()])
        );
    }

    /// `value_type` answers without writing the name; it must answer as the name's
    /// ECS type does, for every kind of field.
    #[test]
    fn value_types_are_the_ecs_types_of_the_names() {
        let mut names: Vec<String> = [
            "event.dataset",
            "data_stream.dataset",
            "event.provider",
            "event.action",
            "event.outcome",
            "user.id",
            "@timestamp",
            "event.id",
            "organization.id",
            "source.ip",
            "event.code",
            "event.category",
            "user.email",
            "user.name",
            "user.domain",
            "user_agent.original",
            "rule.name",
            "o365.audit.OperationCount",
            "o365.audit.OperationCount.x",
            "o365.audit.UserId",
            "o365.audit.ExtendedProperties.RequestType",
            "event.created",
            "event.ingested",
            "event.start",
            "event.end",
            "client.ip",
            "related.ip",
            "source.nat.ip",
            "source.port",
            "url.port",
            "network.packets",
            "event.duration",
            "event.risk_score_norm",
            "file.size",
            "email.attachments.file.size",
            "file.code_signature.valid",
            "user.entity.attributes.managed",
            "host.name",
            "o365.audit",
            "",
        ]
        .iter()
        .map(|n| n.to_string())
        .collect();
        names.extend(crate::enrich::DERIVED.iter().map(|(_, n)| n.to_string()));
        for name in &names {
            let field = Field::parse(name);
            assert_eq!(
                field.value_type(),
                ecs_type(&field.name()),
                "{name} ({field:?})"
            );
        }
    }
}
