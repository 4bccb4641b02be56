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

/// Where a query reads field values from (a parsed record, in practice).
pub trait FieldSource {
    /// Calls `pred` on each text value of `field` (several for an array) until it
    /// returns true; returns whether any call did.
    fn any_value(&self, field: &Field, pred: &mut dyn FnMut(&str) -> bool) -> bool;
}
