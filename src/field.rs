//! Field names and the trait that reads them: the leaf both sides of a rule meet at.
//!
//! Place in the flow: `rule` resolves the ECS names a query or an evidence list uses
//! into [`Field`]s once, at compile time; `record` answers them for a parsed record
//! through [`FieldSource`]. This module depends on nothing else in the crate, so the
//! record view and the rule language do not depend on each other.

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
    /// `o365.audit.<path>`: the raw record's own fields.
    Audit(String),
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
            _ => match name.strip_prefix("o365.audit.") {
                Some(rest) if !rest.is_empty() => Field::Audit(rest.to_string()),
                _ => Field::Other(name.to_string()),
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
            Field::Audit(rest) => format!("o365.audit.{rest}"),
            Field::Other(name) => name.clone(),
        }
    }

    /// Whether a value of this field appears byte for byte in the line of every record
    /// shape (so it can serve as a prefilter literal). Mapped fields do not: a raw record
    /// has no `o365.audit` dataset string and spells success `Succeeded`.
    pub fn is_verbatim(&self) -> bool {
        !matches!(
            self,
            Field::Dataset(_) | Field::Outcome | Field::Timestamp | Field::SourceIp
        )
    }
}

/// How a field's values compare, as Elastic's index mapping types them. KQL needs it:
/// `OperationCount >= 100` compares numbers, while the same text on a keyword field
/// compares strings byte by byte (`"500" > "1023"`), as Elasticsearch does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Exact, case-sensitive text; ranges are lexicographic. The default.
    Keyword,
    /// A number (`long`, `float`, …): equality and ranges are numeric.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A point in time: RFC 3339, a date alone, or epoch milliseconds.
    Date,
    /// An IPv4 or IPv6 address; a query value may be a CIDR block.
    Ip,
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueType::Keyword => "keyword",
            ValueType::Number => "numeric",
            ValueType::Boolean => "boolean",
            ValueType::Date => "date",
            ValueType::Ip => "ip",
        })
    }
}

impl ValueType {
    /// The type of the field with this ECS name: a hand table of the non-keyword ECS
    /// fields (types from ECS 9.4) that Microsoft 365 data and Elastic's M365 rules use,
    /// plus the integration's one numeric `o365.audit` field. Everything else, all other
    /// `o365.audit.*` fields included (`Parameters.*` too), is a keyword.
    pub fn of_name(name: &str) -> ValueType {
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
}

impl Field {
    /// How this field's values compare (see [`ValueType::of_name`]).
    pub fn value_type(&self) -> ValueType {
        ValueType::of_name(&self.name())
    }
}

/// Where a query reads field values from (a parsed record, in practice).
pub trait FieldSource {
    /// Calls `pred` on each text value of `field` (several for an array) until it
    /// returns true; returns whether any call did. Numbers and booleans come as JSON
    /// writes them (`5`, `true`).
    fn any_value(&self, field: &Field, pred: &mut dyn FnMut(&str) -> bool) -> bool;

    /// For a KQL nested query `field:{ … }`: calls `pred` with a view of each element of
    /// the object array at `field` (or of the object itself) until it returns true, and
    /// returns `Some(whether any call did)`; no element gives `Some(false)`. An element
    /// view answers the same full field names (`deltas.action`), restricted to that one
    /// element, so that all of the inner query must hold within one element.
    ///
    /// The default, `None`, says this source has no element boundaries: the inner
    /// query is then evaluated against the whole record, as Elasticsearch does on an
    /// `object` (not `nested`) mapping, where conditions may be met by different elements.
    fn each_element(
        &self,
        field: &Field,
        pred: &mut dyn FnMut(&dyn FieldSource) -> bool,
    ) -> Option<bool> {
        let _ = (field, pred);
        None
    }
}
