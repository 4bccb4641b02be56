//! The record view: one parsed audit record, whatever its shape, seen through ECS
//! field names.
//!
//! Place in the flow: `scan` parses a candidate line with simd-json into a tape and
//! wraps it in a [`Record`]; the rule reads fields through [`Fields`]. The view maps
//! raw Unified Audit Log records the way Elastic's o365 ingest pipeline does (DESIGN §2),
//! so a rule sees the same fields for a raw record and for an ECS document. It never
//! copies the record: every string it hands out borrows from the parse buffer.
//!
//! Field names are resolved to a [`Field`] once, when a rule is compiled, not per line.

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{DateTime, NaiveDateTime, Utc};
use simd_json::prelude::*;
use simd_json::tape::Value;

use crate::field::{DatasetName, Field, Fields, O365_AUDIT};

/// The shape a record was recognised as (DESIGN §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A raw Unified Audit Log record.
    Raw,
    /// An ECS document (nested, dotted or mixed keys).
    Ecs,
}

/// A parsed record, seen through ECS field names.
#[derive(Clone, Copy, Debug)]
pub struct Record<'t, 'i> {
    /// The record's object (always an object).
    root: Value<'t, 'i>,
    shape: Shape,
    /// Whether the object has a known shape at all (`Operation`, or `event`).
    recognised: bool,
    /// The raw keys the mapping reads, found in the one pass that also tells the shape.
    keys: RawKeys<Value<'t, 'i>>,
    /// The time of a raw record that has no `CreationTime` (PowerShell's `CreationDate`).
    fallback_time: Option<&'i str>,
    /// Set when the object only wraps its record as JSON text in a string.
    embedded: Option<Embedded<'i>>,
    /// The ECS document whose `event.original` this record is: its own enrichment
    /// fields are read before the record's derived ones ([`Record::document`]).
    document: Option<Value<'t, 'i>>,
}

/// A record held as JSON text in a string of its wrapper: the `AuditData` string of
/// `Search-UnifiedAuditLog | ConvertTo-Json`, or the `event.original` of Elastic's
/// pipeline tests. The caller parses `json` a second time, into a buffer of its own, and
/// gives the record [`Record::with_fallback_time`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedded<'i> {
    /// The record's JSON text (already unescaped from the wrapper's string).
    pub json: &'i str,
    /// The wrapper's `CreationDate`, the time to use when the record has no
    /// `CreationTime`.
    pub fallback_time: Option<&'i str>,
}

/// The keys of an object that one pass over it looks for: the ones the raw mapping
/// reads, and the ones that tell a wrapper (an Elasticsearch hit, the CEL input, a
/// PowerShell export object, an ECS document that only kept `event.original`).
#[derive(Clone, Copy, Debug)]
struct Found<'t, 'i> {
    raw: RawKeys<Value<'t, 'i>>,
    source: Option<Value<'t, 'i>>,
    o365audit: Option<Value<'t, 'i>>,
    audit_data: Option<Value<'t, 'i>>,
    creation_date: Option<Value<'t, 'i>>,
    event: Option<Value<'t, 'i>>,
    event_original: Option<Value<'t, 'i>>,
    /// A dotted `event.*` key was seen.
    dotted_event: bool,
}

impl<'t, 'i> Found<'t, 'i> {
    /// The slot for a key that is looked for, if it is one.
    fn slot(&mut self, key: &str) -> Option<&mut Option<Value<'t, 'i>>> {
        Some(match key {
            "_source" => &mut self.source,
            "o365audit" => &mut self.o365audit,
            // Microsoft Graph's auditLogRecord spells them `auditData`, `createdDateTime`.
            "AuditData" | "auditData" => &mut self.audit_data,
            "CreationDate" | "createdDateTime" => &mut self.creation_date,
            "event" => &mut self.event,
            "event.original" => &mut self.event_original,
            _ => return self.raw.slot(key),
        })
    }

    fn of(root: Value<'t, 'i>) -> Result<Found<'t, 'i>, NotARecord> {
        let mut found = Found {
            raw: RawKeys::default(),
            source: None,
            o365audit: None,
            audit_data: None,
            creation_date: None,
            event: None,
            event_original: None,
            dotted_event: false,
        };
        for (k, v) in root.as_object().ok_or(NotARecord::NotAnObject)?.iter() {
            if let Some(slot) = found.slot(k) {
                // JSON objects may repeat a key; the last one wins, as in Elastic.
                *slot = Some(v);
            }
            if k.starts_with("event.") {
                found.dotted_event = true;
            }
        }
        Ok(found)
    }

    fn is_ecs(&self) -> bool {
        self.dotted_event || self.event.is_some_and(|e| e.is_object())
    }

    /// The record of an ECS document that kept nothing but `event.original` (no
    /// `event.action`): the JSON text of the original event.
    fn original(&self, root: Value<'t, 'i>) -> Option<&'i str> {
        if self.raw.operation.is_some() {
            return None;
        }
        let text = self
            .event_original
            .or_else(|| self.event?.as_object()?.get("original"))?
            .into_string()?;
        let is_json_object = text.trim_start().starts_with('{');
        (is_json_object && lookup(root, "event.action").is_none()).then_some(text)
    }
}

/// The top-level values a raw record is read from, looked up once per record instead of
/// once per field access (an object lookup is a linear scan of its keys). Generic over
/// the JSON source: a parsed tape, or the raw bytes read on demand (`ondemand`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawKeys<V> {
    workload: Option<V>,
    operation: Option<V>,
    result_status: Option<V>,
    user_id: Option<V>,
    creation_time: Option<V>,
    id: Option<V>,
    organization_id: Option<V>,
    client_ip_address: Option<V>,
    client_ip: Option<V>,
    actor_ip_address: Option<V>,
    parameters: Option<V>,
    object_id: Option<V>,
    record_type: Option<V>,
    user_type: Option<V>,
    user_agent: Option<V>,
    extended_properties: Option<V>,
    modified_properties: Option<V>,
    /// Read by field only (Sigma's default evidence), never by the mapping itself.
    organization_name: Option<V>,
    client_info_string: Option<V>,
}

impl<V> Default for RawKeys<V> {
    fn default() -> Self {
        RawKeys {
            workload: None,
            operation: None,
            result_status: None,
            user_id: None,
            creation_time: None,
            id: None,
            organization_id: None,
            client_ip_address: None,
            client_ip: None,
            actor_ip_address: None,
            parameters: None,
            object_id: None,
            record_type: None,
            user_type: None,
            user_agent: None,
            extended_properties: None,
            modified_properties: None,
            organization_name: None,
            client_info_string: None,
        }
    }
}

impl<V> RawKeys<V> {
    /// The slot for a key the mapping reads, if it is one.
    pub(crate) fn slot(&mut self, key: &str) -> Option<&mut Option<V>> {
        Some(match key {
            "Workload" => &mut self.workload,
            "Operation" => &mut self.operation,
            "ResultStatus" => &mut self.result_status,
            "UserId" => &mut self.user_id,
            "CreationTime" => &mut self.creation_time,
            "Id" => &mut self.id,
            "OrganizationId" => &mut self.organization_id,
            "ClientIPAddress" => &mut self.client_ip_address,
            "ClientIP" => &mut self.client_ip,
            "ActorIpAddress" => &mut self.actor_ip_address,
            "Parameters" => &mut self.parameters,
            "ObjectId" => &mut self.object_id,
            "RecordType" => &mut self.record_type,
            "UserType" => &mut self.user_type,
            "UserAgent" => &mut self.user_agent,
            "ExtendedProperties" => &mut self.extended_properties,
            "ModifiedProperties" => &mut self.modified_properties,
            "OrganizationName" => &mut self.organization_name,
            "ClientInfoString" => &mut self.client_info_string,
            _ => return None,
        })
    }

    /// The value of a top-level key held here, the last entry of that name as
    /// [`RawKeys::slot`] keeps it: `Some(None)` for a held key the record lacks, `None`
    /// for a key not held (whose value only a walk of the object finds).
    pub(crate) fn held(&self, key: &str) -> Option<Option<V>>
    where
        V: Copy,
    {
        Some(match key {
            "Workload" => self.workload,
            "Operation" => self.operation,
            "ResultStatus" => self.result_status,
            "UserId" => self.user_id,
            "CreationTime" => self.creation_time,
            "Id" => self.id,
            "OrganizationId" => self.organization_id,
            "ClientIPAddress" => self.client_ip_address,
            "ClientIP" => self.client_ip,
            "ActorIpAddress" => self.actor_ip_address,
            "Parameters" => self.parameters,
            "ObjectId" => self.object_id,
            "RecordType" => self.record_type,
            "UserType" => self.user_type,
            "UserAgent" => self.user_agent,
            "ExtendedProperties" => self.extended_properties,
            "ModifiedProperties" => self.modified_properties,
            "OrganizationName" => self.organization_name,
            "ClientInfoString" => self.client_info_string,
            _ => return None,
        })
    }

    /// Whether the record has an `Operation` (what makes an object a raw record).
    pub(crate) fn has_operation(&self) -> bool {
        self.operation.is_some()
    }
}

/// Why a parsed line is not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotARecord {
    /// The line is JSON but not an object.
    NotAnObject,
}

impl<'t, 'i> Record<'t, 'i> {
    /// Recognises the shape of a parsed JSON value. Wrappers are unwrapped to the record
    /// they hold: an Elasticsearch hit (`_source`), the Elastic Agent CEL input's
    /// `{"o365audit": record}`, a `Search-UnifiedAuditLog | ConvertTo-Json` object
    /// whose `AuditData` is an object (its `CreationDate` is kept as the fallback time),
    /// and a Microsoft Graph `auditLogRecord` (`auditData`, `createdDateTime`).
    /// A wrapper whose record is JSON text in a string is told by [`Record::embedded`].
    pub fn new(value: Value<'t, 'i>) -> Result<Record<'t, 'i>, NotARecord> {
        let found = Found::of(value)?;
        let wrapped = found
            .source
            .filter(|v| v.is_object())
            .or_else(|| found.o365audit.filter(|v| v.is_object()));
        if let Some(inner) = wrapped {
            return Ok(Record::read(inner, Found::of(inner)?));
        }
        let Some(data) = found.audit_data else {
            return Ok(Record::read(value, found));
        };
        let fallback_time = found.creation_date.and_then(|v| v.into_string());
        if data.is_object() {
            let record = Record::read(data, Found::of(data)?);
            return Ok(record.with_fallback_time(fallback_time));
        }
        let mut record = Record::read(value, found);
        record.embedded = data.into_string().map(|json| Embedded {
            json,
            fallback_time,
        });
        Ok(record)
    }

    fn read(root: Value<'t, 'i>, found: Found<'t, 'i>) -> Record<'t, 'i> {
        let ecs = found.is_ecs();
        let embedded = if ecs { found.original(root) } else { None };
        Record {
            root,
            shape: if ecs { Shape::Ecs } else { Shape::Raw },
            recognised: ecs || found.raw.operation.is_some(),
            keys: found.raw,
            fallback_time: None,
            embedded: embedded.map(|json| Embedded {
                json,
                fallback_time: None,
            }),
            document: None,
        }
    }

    /// The object this record was read from; for an ECS document whose record is its
    /// `event.original` ([`Record::embedded`]), the document to give that record
    /// ([`Record::with_document`]).
    pub(crate) fn ecs_document(&self) -> Option<Value<'t, 'i>> {
        (self.shape == Shape::Ecs && self.embedded.is_some()).then_some(self.root)
    }

    /// Gives a record read from an ECS document's `event.original` that document, whose
    /// own `source.geo.*`, `source.as.*` and `user_agent.*` fields (the pipeline's
    /// enrichment) are what a rule sees of those fields, as in Elastic, which evaluates
    /// the document ([`crate::enrich::Enriched`]).
    pub(crate) fn with_document(mut self, document: Option<Value<'t, 'i>>) -> Record<'t, 'i> {
        self.document = document;
        self
    }

    /// The ECS document this record was read from the `event.original` of, if it was.
    pub fn document(&self) -> Option<Record<'t, 'i>> {
        let root = self.document?;
        Some(Record::read(root, Found::of(root).ok()?))
    }

    /// The shape this record was recognised as.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Whether the object has a record shape at all: a raw record (`Operation`) or an
    /// ECS document (`event` object or `event.*` keys). One that has neither cannot be
    /// mapped; it is read as a raw record without fields.
    pub fn is_recognised(&self) -> bool {
        self.recognised
    }

    /// Set when this object only wraps its record as JSON text in a string (PowerShell's
    /// `AuditData` string, an ECS document with nothing but `event.original`): then that
    /// text, not this object, is the record.
    pub fn embedded(&self) -> Option<Embedded<'i>> {
        self.embedded
    }

    /// Gives a raw record the time to use when it has no `CreationTime` (PowerShell's
    /// `CreationDate`: `/Date(ms)/`, ISO 8601 or a culture-formatted date).
    pub fn with_fallback_time(mut self, time: Option<&'i str>) -> Record<'t, 'i> {
        self.fallback_time = time;
        self
    }

    /// The first text value of a field, if any.
    pub fn text(&self, field: &Field) -> Option<Cow<'i, str>> {
        self.first_where(field, |_| true)
    }

    /// The first value of a field that is not the empty string (what evidence shows: an
    /// empty string is a value to a query, but shows nothing).
    pub fn shown_text(&self, field: &Field) -> Option<Cow<'i, str>> {
        self.first_where(field, |v| !v.is_empty())
    }

    /// The first value of a field that `keep` accepts.
    fn first_where(&self, field: &Field, keep: fn(&str) -> bool) -> Option<Cow<'i, str>> {
        let mut found = None;
        self.visit(field, &mut |v| {
            if !keep(&v) {
                return false;
            }
            found = Some(v);
            true
        });
        found
    }

    /// The actor (`user.id`).
    pub fn actor(&self) -> Option<Cow<'i, str>> {
        self.text(&Field::UserId)
    }

    /// The event time (`@timestamp`), parsed; no offset means UTC. A raw record without
    /// `CreationTime` takes its fallback time (see [`Record::with_fallback_time`]).
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        if self.shape == Shape::Raw && self.keys.creation_time.is_none() {
            return self.fallback_time.and_then(parse_creation_date);
        }
        parse_timestamp(&self.text(&Field::Timestamp)?)
    }

    /// The client address `source.ip` is taken from, before it is reduced to an IP:
    /// for a raw record the first non-empty of `ClientIPAddress`, `ClientIP`,
    /// `ActorIpAddress`; for an ECS document `source.ip` (else `client.ip`) as it is.
    /// Lets a caller cache the reduction per distinct address.
    pub fn client_address(&self) -> Option<&'i str> {
        match self.shape {
            Shape::Raw => self.raw().client_address(),
            Shape::Ecs => {
                let v =
                    lookup(self.root, "source.ip").or_else(|| lookup(self.root, "client.ip"))?;
                v.into_string()
            }
        }
    }

    /// The record's `Operation` as the Unified Audit Log spells it, in every shape:
    /// `o365.audit.Operation` of an ECS document, else its `event.action` with the
    /// pipeline's renaming undone (`modified-user-account` is `Update user.`). Every
    /// list of actions in a report uses this one spelling.
    pub fn operation(&self) -> Option<Cow<'i, str>> {
        static OPERATION: std::sync::LazyLock<Field> =
            std::sync::LazyLock::new(|| Field::parse("o365.audit.Operation"));
        if self.shape == Shape::Raw {
            // The key read once per record, as `event.action` reads it.
            let mut op = None;
            each_text(self.keys.operation, &mut |s| {
                op = Some(s).filter(|s| !s.is_empty());
                op.is_some()
            });
            return op;
        }
        self.shown_text(&OPERATION).or_else(|| {
            let action = self.text(&Field::Action)?;
            Some(match crate::field::raw_operation(&action) {
                Some(raw) => Cow::Borrowed(raw),
                None => action,
            })
        })
    }

    /// The cmdlet as it was run, rebuilt from the action and the record's `Parameters`
    /// in their order: `Set-MailboxAuditBypassAssociation -Identity "x"
    /// -AuditBypassEnabled $true`. Boolean-like values become `$true`/`$false`; others
    /// are quoted the PowerShell way (a `"` inside becomes `` `" ``); null values are
    /// left out. A `Parameters` string is appended as it is.
    pub fn command_line(&self) -> Option<String> {
        let mut line = String::new();
        self.write_command_line(&mut line).then_some(line)
    }

    /// [`Record::command_line`] written into `line` (cleared first, its capacity kept,
    /// so a caller that copies the text out reuses one buffer); false when the record
    /// has no `Operation`.
    pub fn write_command_line(&self, line: &mut String) -> bool {
        line.clear();
        let Some(action) = self.operation() else {
            return false;
        };
        let params = match self.shape {
            Shape::Raw => self.keys.parameters,
            Shape::Ecs => lookup(self.root, "o365.audit.Parameters"),
        };
        line.push_str(&action);
        let Some(params) = params else {
            return true;
        };
        if let Some(raw) = params.into_string() {
            line.push(' ');
            line.push_str(raw);
        } else if let Some(items) = params.as_array() {
            for item in items.iter().filter_map(|p| p.as_object()) {
                if let (Some(name), Some(value)) = (
                    item.get("Name").and_then(|n| n.into_string()),
                    item.get("Value"),
                ) {
                    push_parameter(line, name, value);
                }
            }
        } else if let Some(obj) = params.as_object() {
            for (name, value) in obj.iter() {
                push_parameter(line, name, value);
            }
        }
        true
    }

    /// The record's `Parameters` as (name, value) pairs in their order, from
    /// `{"Name","Value"}` entries or an object; a value that is not a scalar has no
    /// text. A `Parameters` string (a command line) gives none.
    pub fn parameters(&self) -> Vec<(String, Option<String>)> {
        let params = match self.shape {
            Shape::Raw => self.keys.parameters,
            Shape::Ecs => lookup(self.root, "o365.audit.Parameters"),
        };
        let Some(params) = params else {
            return Vec::new();
        };
        let text = |v: Option<Value<'_, '_>>| v.and_then(scalar_text).map(Cow::into_owned);
        if let Some(items) = params.as_array() {
            items
                .iter()
                .filter_map(|p| p.as_object())
                .filter_map(|p| {
                    let name = p.get("Name").and_then(|n| n.into_string())?;
                    Some((name.to_string(), text(p.get("Value"))))
                })
                .collect()
        } else if let Some(obj) = params.as_object() {
            obj.iter()
                .map(|(k, v)| (k.to_string(), text(Some(v))))
                .collect()
        } else {
            Vec::new()
        }
    }

    /// The raw record mapping of this record.
    fn raw(&self) -> RawView<'_, Value<'t, 'i>> {
        RawView {
            root: self.root,
            keys: &self.keys,
        }
    }

    /// Calls `f` on each text value of `field` until it returns true.
    fn visit(&self, field: &Field, f: &mut dyn FnMut(Cow<'i, str>) -> bool) -> bool {
        match self.shape {
            Shape::Raw => self.raw().visit(field, f),
            Shape::Ecs => self.visit_ecs(field, f),
        }
    }

    fn visit_ecs(&self, field: &Field, f: &mut dyn FnMut(Cow<'i, str>) -> bool) -> bool {
        let at = |path: &str| lookup(self.root, path);
        match field {
            Field::Dataset(name) => {
                let (first, second) = match name {
                    DatasetName::Event => ("event.dataset", "data_stream.dataset"),
                    DatasetName::DataStream => ("data_stream.dataset", "event.dataset"),
                };
                // In Elastic both are constant keywords of the o365 indices; a document
                // that carries neither is taken to come from them.
                match at(first).or_else(|| at(second)) {
                    Some(v) => each_text(Some(v), f),
                    None => f(Cow::Borrowed(O365_AUDIT)),
                }
            }
            Field::SourceIp => each_text(at("source.ip").or_else(|| at("client.ip")), f),
            Field::EventId => each_text(at("event.id").or_else(|| at("o365.audit.Id")), f),
            Field::Audit(path) if path == ALL_VALUES => visit_path(Some(self.root), "", true, f),
            Field::Audit(path) => {
                let audit = lookup(self.root, "o365.audit");
                // A value found under `o365.audit` is not looked for again under the
                // dotted key: a visitor that collects every value (ES|QL) sees it once.
                let mut seen = false;
                let mut once = |v: Cow<'i, str>| {
                    seen = true;
                    f(v)
                };
                if visit_path(audit, path, is_flattened(path), &mut once) {
                    return true;
                }
                if seen {
                    return false;
                }
                if let Some(v) = lookup(self.root, &format!("o365.audit.{path}")) {
                    return each_text(Some(v), f);
                }
                // A document whose Parameters stayed a Name/Value array.
                match path.strip_prefix("Parameters.") {
                    Some(name) => visit_parameter(at("o365.audit.Parameters"), name, f),
                    None => false,
                }
            }
            other => each_text(at(&other.name()), f),
        }
    }
}

/// The raw record mapping (DESIGN §2) over any JSON source: the values of a raw record's
/// keys, found once, and its object for the fields read by path.
pub(crate) struct RawView<'a, V> {
    /// The record's object.
    pub(crate) root: V,
    /// Its keys the mapping reads.
    pub(crate) keys: &'a RawKeys<V>,
}

impl<'i, V: Json<'i>> RawView<'_, V> {
    /// The first non-empty of `ClientIPAddress`, `ClientIP`, `ActorIpAddress`.
    pub(crate) fn client_address(&self) -> Option<&'i str> {
        let k = self.keys;
        [k.client_ip_address, k.client_ip, k.actor_ip_address]
            .into_iter()
            .filter_map(|v| v.and_then(|v| v.string()))
            .find(|s| !s.trim().is_empty())
    }

    /// Calls `f` on each text value of `field` until it returns true.
    pub(crate) fn visit(&self, field: &Field, f: &mut dyn FnMut(Cow<'i, str>) -> bool) -> bool {
        let k = self.keys;
        match field {
            Field::Dataset(_) => f(Cow::Borrowed(O365_AUDIT)),
            // A record without `Workload` takes its `UserType`, as the pipeline does.
            Field::Provider => match k.workload {
                Some(w) => each_text(Some(w), f),
                None => each_text(k.user_type.filter(|t| !is_empty_text(*t)), f),
            },
            Field::Action => match self.renamed_action() {
                Some(ecs) => f(Cow::Borrowed(ecs)),
                None => each_text(k.operation, f),
            },
            Field::Outcome => f(Cow::Borrowed(raw_outcome(k.result_status))),
            Field::UserId => each_text(k.user_id, f),
            Field::Timestamp => each_text(k.creation_time, f),
            Field::EventId => each_text(k.id, f),
            Field::OrganizationId => each_text(k.organization_id, f),
            Field::SourceIp => match self.client_address().and_then(reduce_ip) {
                Some(ip) => f(Cow::Owned(ip)),
                None => false,
            },
            Field::Code => match self.code() {
                Some(code) => f(Cow::Borrowed(code)),
                None => false,
            },
            Field::Category => self.categories().into_iter().any(|c| f(Cow::Borrowed(c))),
            Field::UserEmail | Field::UserName | Field::UserDomain => {
                let Some(id) = k.user_id.and_then(|v| v.string()) else {
                    return false;
                };
                // The pipeline splits `user.id` on `@` only when it has exactly two parts.
                let mut parts = id.split('@');
                let (Some(name), Some(domain), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return false;
                };
                f(Cow::Borrowed(match field {
                    Field::UserEmail => id,
                    Field::UserName => name,
                    _ => domain,
                }))
            }
            Field::UserAgent => match k.user_agent {
                Some(ua) => each_text(Some(ua), f),
                None => visit_parameter(k.extended_properties, "UserAgent", f),
            },
            Field::RuleName => match self.code() {
                Some("SecurityComplianceAlerts") => each_text(lookup(self.root, "Name"), f),
                Some("ComplianceDLPSharePoint" | "ComplianceDLPExchange") => {
                    each_text(lookup(self.root, "PolicyName"), f)
                        || visit_path(
                            lookup(self.root, "PolicyDetails"),
                            "Rules.RuleName",
                            false,
                            f,
                        )
                }
                _ => false,
            },
            Field::Audit(path) => {
                if let Some(name) = path.strip_prefix("Parameters.") {
                    return visit_parameter(k.parameters, name, f);
                }
                if let Some(name) = path.strip_prefix("ExtendedProperties.") {
                    return visit_parameter(k.extended_properties, name, f);
                }
                if let Some(rest) = path.strip_prefix("ModifiedProperties.") {
                    return visit_modified(k.modified_properties, rest, f);
                }
                match path.as_str() {
                    "ObjectId" => each_text(k.object_id, f),
                    "RecordType" => each_text(k.record_type, f),
                    "UserType" => each_text(k.user_type, f),
                    // Every value of the record (Sigma keyword selections).
                    ALL_VALUES => visit_path(Some(self.root), "", true, f),
                    // A top-level key found once per record (Sigma's `Operation`,
                    // `Workload`, its evidence): its value as the walk of the object
                    // would find it (the last entry of that name), without the walk.
                    // No held key has a dot or is a `flattened` field.
                    _ => match k.held(path) {
                        Some(value) => visit_path(value, "", false, f),
                        None => visit_path(Some(self.root), path, is_flattened(path), f),
                    },
                }
            }
            // The pipeline appends `user.name` and, for an Azure AD record, the name of
            // its `ObjectId` (`user.target.name`) when it is `name@domain`.
            Field::Other(name) if name == "related.user" => {
                let target = match self.code() {
                    Some("AzureActiveDirectory") => k.object_id.and_then(|v| v.string()),
                    _ => None,
                };
                let target = target.and_then(|id| {
                    let mut parts = id.split('@');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some(name), Some(_), None) => Some(name),
                        _ => None,
                    }
                });
                self.visit(&Field::UserName, f) || target.is_some_and(|t| f(Cow::Borrowed(t)))
            }
            // The pipeline's file fields, from the keys its record schema gives them.
            Field::Other(name) if file_key(self.code(), name).is_some() => {
                let key = file_key(self.code(), name).expect("checked in the guard");
                each_text(lookup(self.root, key), f)
            }
            // Derived by the pipeline's enrichment (`enrich::Enriched`), not the record.
            Field::Other(_) | Field::Derived(_) => false,
        }
    }

    /// The `event.code` of a raw record: its `RecordType` named.
    pub(crate) fn code(&self) -> Option<&'static str> {
        let rt = self.keys.record_type?;
        // An integer (the usual `RecordType`) is looked up by number, without writing
        // its text to read it back: what `record_type_name` gives for that text.
        if let Some(n) = rt.integer() {
            let n = u16::try_from(n).ok()?;
            return crate::field::RECORD_TYPES
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, name)| *name);
        }
        let text = scalar_text(rt)?;
        crate::field::record_type_name(&text)
    }

    /// The ECS `event.action` when the pipeline renames the operation.
    fn renamed_action(&self) -> Option<&'static str> {
        let op = self.keys.operation?.string()?;
        // The record type (a number's text, looked up) only for an operation that is
        // renamed for some type: most are none, and `event.action` is read often.
        if !crate::field::RENAMED_ACTIONS
            .iter()
            .any(|(_, raw, _)| *raw == op)
        {
            return None;
        }
        let code = self.code()?;
        crate::field::RENAMED_ACTIONS
            .iter()
            .find(|(c, raw, _)| *c == code && *raw == op)
            .map(|(_, _, ecs)| *ecs)
    }

    /// `event.category` of a raw record, as the pipeline appends it.
    fn categories(&self) -> Categories {
        let mut out = Categories::default();
        out.push("web");
        let code = self.code();
        let op = self.keys.operation.and_then(|v| v.string()).unwrap_or("");
        match (code, op) {
            (Some("AzureActiveDirectory"), "Add user." | "Update user." | "Delete user.") => {
                out.push("iam")
            }
            (Some(crate::field::SIGN_IN_CODE), _) => out.push("authentication"),
            (Some("ExchangeItem"), _) => out.push("email"),
            (Some("MicrosoftTeams"), "TeamCreated" | "MemberAdded" | "Delete user.") => {
                out.push("iam")
            }
            _ => {}
        }
        const FILE_OPS: [&str; 15] = [
            "FileAccessed",
            "FileDeleted",
            "FileDownloaded",
            "FileModified",
            "FileMoved",
            "FileRenamed",
            "FileRestored",
            "FileUploaded",
            "FolderCopied",
            "FolderCreated",
            "FolderDeleted",
            "FolderModified",
            "FolderMoved",
            "FolderRenamed",
            "FolderRestored",
        ];
        if FILE_OPS.contains(&op) {
            out.push("file");
        }
        if op == "ComplianceSettingChanged" {
            out.push("configuration");
        }
        if matches!(
            code,
            Some("ComplianceDLPSharePoint" | "ComplianceDLPExchange")
        ) {
            out.push("file");
        }
        if code == Some("ExchangeItemAggregated") {
            out.push("email");
        }
        out
    }
}

impl Fields<Field> for Record<'_, '_> {
    fn any_value(&self, field: &Field, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.visit(field, &mut |v| pred(&v))
    }
}

/// A JSON value as the record mapping reads it: a node of a parsed tape, or a value
/// read on demand from a line's bytes (`ondemand`). Strings borrow from the input.
pub(crate) trait Json<'i>: Copy {
    /// The text of a string.
    fn string(self) -> Option<&'i str>;
    /// A boolean.
    fn boolean(self) -> Option<bool>;
    /// Whether this is `null`.
    fn is_null(self) -> bool;
    /// Whether this is an object.
    fn is_object(self) -> bool;
    /// A number's text, as a keyword field holds it ([`number_text`] of the number).
    fn number(self) -> Option<Cow<'i, str>>;
    /// A number that [`Json::number`] writes as a signed 64-bit integer's text, when the
    /// source knows it without writing that text (`None`: read the text).
    fn integer(self) -> Option<i64> {
        None
    }
    /// The value of the last entry named `key`, for an object: a repeated key reads as
    /// the mapping's own keys read it ([`RawKeys`]), and as the JSON decoders of
    /// Elastic's collectors leave it (the later value replaces the earlier).
    fn get(self, key: &str) -> Option<Self>;
    /// Calls `f` on each entry of an object until it returns true: `None` for any other
    /// value, else whether a call did.
    fn any_entry(self, f: &mut dyn FnMut(&'i str, Self) -> bool) -> Option<bool>;
    /// Calls `f` on each element of an array until it returns true: `None` for any other
    /// value, else whether a call did.
    fn any_element(self, f: &mut dyn FnMut(Self) -> bool) -> Option<bool>;
}

impl<'t, 'i> Json<'i> for Value<'t, 'i> {
    fn string(self) -> Option<&'i str> {
        self.into_string()
    }

    fn boolean(self) -> Option<bool> {
        self.as_bool()
    }

    fn is_null(self) -> bool {
        self.as_null().is_some()
    }

    fn is_object(self) -> bool {
        Value::is_object(&self)
    }

    fn integer(self) -> Option<i64> {
        self.as_i64()
    }

    fn number(self) -> Option<Cow<'i, str>> {
        if let Some(n) = self.as_i64() {
            return Some(Cow::Owned(n.to_string()));
        }
        if let Some(n) = self.as_u64() {
            return Some(Cow::Owned(n.to_string()));
        }
        self.as_f64().map(|n| Cow::Owned(float_text(n)))
    }

    fn get(self, key: &str) -> Option<Self> {
        let mut found = None;
        for (k, v) in self.as_object()?.iter() {
            if k == key {
                found = Some(v);
            }
        }
        found
    }

    fn any_entry(self, f: &mut dyn FnMut(&'i str, Self) -> bool) -> Option<bool> {
        Some(self.as_object()?.iter().any(|(k, v)| f(k, v)))
    }

    fn any_element(self, f: &mut dyn FnMut(Self) -> bool) -> Option<bool> {
        Some(self.as_array()?.iter().any(f))
    }
}

/// The text of a JSON number as a keyword field compares it. Elasticsearch indexes a
/// number's original JSON text; an integer has one JSON spelling, kept (`-0` reads as
/// `0`), and a number with a fraction or an exponent is given in its shortest form with
/// a `.` or an exponent (`20001.0` stays `20001.0`, never `20001`), so it never equals an
/// integer's text, as the original never does. (Writers that spell a fraction other than
/// shortest, `1.50`, are the one difference from Elasticsearch.)
pub(crate) fn float_text(n: f64) -> String {
    format!("{n:?}")
}

/// Looks a dotted path up in an object whose keys may be nested (`{"event":{"action":…}}`),
/// dotted (`{"event.action":…}`) or any mix of the two.
/// The raw key Elastic's o365 pipeline renames to the ECS file (or URL) field `name`
/// for a record of `event.code` `code`: SharePoint and OneDrive file and sharing
/// operations give `file.name`, `file.directory`, `file.extension` and `url.original`;
/// DLP records their `SharePointMetaData`'s; Yammer records `FileName`. Elsewhere the
/// pipeline sets none of them.
fn file_key(code: Option<&str>, name: &str) -> Option<&'static str> {
    match (code?, name) {
        ("SharePointFileOperation" | "SharePointSharingOperation", _) => match name {
            "file.name" => Some("SourceFileName"),
            "file.directory" => Some("SourceRelativeUrl"),
            "file.extension" => Some("SourceFileExtension"),
            "url.original" => Some("ObjectId"),
            _ => None,
        },
        ("ComplianceDLPSharePoint" | "ComplianceDLPExchange", _) => match name {
            "file.name" => Some("SharePointMetaData.FileName"),
            "file.owner" => Some("SharePointMetaData.FileOwner"),
            "url.original" => Some("SharePointMetaData.FilePathUrl"),
            _ => None,
        },
        ("Yammer", "file.name") => Some("FileName"),
        _ => None,
    }
}

fn lookup<'i, V: Json<'i>>(value: V, path: &str) -> Option<V> {
    if !value.is_object() {
        return None;
    }
    if let Some(v) = value.get(path) {
        return Some(v);
    }
    path.match_indices('.').find_map(|(i, _)| {
        let child = value.get(&path[..i]).filter(|c| c.is_object())?;
        lookup(child, &path[i + 1..])
    })
}

/// Calls `f` on the text of a scalar, or of each scalar in an array.
fn each_text<'i, V: Json<'i>>(value: Option<V>, f: &mut dyn FnMut(Cow<'i, str>) -> bool) -> bool {
    let Some(value) = value else { return false };
    match value.any_element(&mut |v| scalar_text(v).is_some_and(&mut *f)) {
        Some(any) => any,
        None => scalar_text(value).is_some_and(f),
    }
}

/// The text of a scalar: strings as they are, booleans as JSON writes them, numbers as
/// a keyword field holds them ([`float_text`]).
fn scalar_text<'i, V: Json<'i>>(value: V) -> Option<Cow<'i, str>> {
    if let Some(s) = value.string() {
        return Some(Cow::Borrowed(s));
    }
    if let Some(b) = value.boolean() {
        return Some(Cow::Borrowed(if b { "true" } else { "false" }));
    }
    value.number()
}

/// Appends ` -Name value` to a command line.
fn push_parameter(line: &mut String, name: &str, value: Value<'_, '_>) {
    let Some(text) = scalar_text(value) else {
        return;
    };
    line.push_str(" -");
    line.push_str(name);
    match parse_flag(&text).filter(|_| !text.trim().chars().all(|c| c.is_ascii_digit())) {
        Some(true) => line.push_str(" $true"),
        Some(false) => line.push_str(" $false"),
        None => {
            line.push_str(" \"");
            if text.contains('"') {
                line.push_str(&text.replace('"', "`\""));
            } else {
                line.push_str(&text);
            }
            line.push('"');
        }
    }
}

/// `Parameters.<name>` of a raw record: the last non-null `Value` of a `{"Name","Value"}`
/// entry with that name; a string `Parameters` answers only to `_raw`.
fn visit_parameter<'i, V: Json<'i>>(
    params: Option<V>,
    name: &str,
    f: &mut dyn FnMut(Cow<'i, str>) -> bool,
) -> bool {
    let Some(params) = params else { return false };
    if let Some(s) = params.string() {
        return name == "_raw" && f(Cow::Borrowed(s));
    }
    if params.is_object() {
        return each_text(params.get(name), f);
    }
    let mut last = None;
    params.any_element(&mut |p| {
        if p.is_object()
            && p.get("Name").and_then(|n| n.string()) == Some(name)
            && let Some(v) = p.get("Value").filter(|v| !v.is_null())
        {
            last = Some(v);
        }
        false
    });
    each_text(last, f)
}

/// A raw record's `event.category` values (at most five), without an allocation per
/// evaluation.
#[derive(Default)]
struct Categories {
    items: [&'static str; 6],
    len: usize,
}

impl Categories {
    fn push(&mut self, c: &'static str) {
        if self.len < self.items.len() {
            self.items[self.len] = c;
            self.len += 1;
        }
    }
}

impl IntoIterator for Categories {
    type Item = &'static str;
    type IntoIter = std::iter::Take<std::array::IntoIter<&'static str, 6>>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().take(self.len)
    }
}

/// The `o365.audit.*` path: every value of the record, whatever its key.
const ALL_VALUES: &str = "*";

/// Whether `path` (under `o365.audit`) is one of the integration's `flattened` fields:
/// a query on it matches any leaf value inside.
fn is_flattened(path: &str) -> bool {
    let top = path.split('.').next().unwrap_or("");
    matches!(top, "Members" | "Actions" | "AlertLinks" | "PolicyDetails")
        || path.starts_with("Data.flattened")
}

fn is_empty_text<'i, V: Json<'i>>(v: V) -> bool {
    v.string().is_some_and(|s| s.is_empty())
}

/// Calls `f` on every value at a dotted `path` below `value`, as Elasticsearch indexes
/// an object: arrays anywhere on the way give one value per element, keys may be
/// nested or dotted. At the end of the path a scalar gives its text, an array its
/// elements' texts; an object gives its leaves only when the field is `flattened`.
/// An empty string is a value: the pipeline keeps it (`"ClientAppId": ""` in its test
/// documents), and a keyword field indexes it.
fn visit_path<'i, V: Json<'i>>(
    value: Option<V>,
    path: &str,
    flattened: bool,
    f: &mut dyn FnMut(Cow<'i, str>) -> bool,
) -> bool {
    let Some(value) = value else { return false };
    if let Some(any) = value.any_element(&mut |v| visit_path(Some(v), path, flattened, f)) {
        return any;
    }
    if path.is_empty() {
        if value.is_object() {
            return flattened
                && value
                    .any_entry(&mut |_, v| visit_path(Some(v), "", true, f))
                    .unwrap_or(false);
        }
        return scalar_text(value).is_some_and(f);
    }
    if !value.is_object() {
        return false;
    }
    if let Some(v) = value.get(path) {
        return visit_path(Some(v), "", flattened, f);
    }
    path.match_indices('.').any(|(i, _)| {
        value
            .get(&path[..i])
            .is_some_and(|child| visit_path(Some(child), &path[i + 1..], flattened, f))
    })
}

/// Every text value at `path` below `root` found by walking the object (what a field of
/// a top-level key [`RawKeys::held`] holds read before it held it), for the tests that
/// compare the two.
#[cfg(test)]
pub(crate) fn walked<'i, V: Json<'i>>(root: V, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    visit_path(Some(root), path, is_flattened(path), &mut |v| {
        out.push(v.into_owned());
        false
    });
    out
}

#[cfg(test)]
impl<'t, 'i> Record<'t, 'i> {
    /// The object this record's fields are read from.
    pub(crate) fn root_for_tests(&self) -> Value<'t, 'i> {
        self.root
    }
}

/// `ModifiedProperties.<Name>.NewValue` / `.OldValue` of a raw record: the pipeline makes
/// the `{"Name","NewValue","OldValue"}` list an object keyed by the name with spaces and
/// dots turned into `_`, keeping only entries whose old and new values are both present.
fn visit_modified<'i, V: Json<'i>>(
    props: Option<V>,
    rest: &str,
    f: &mut dyn FnMut(Cow<'i, str>) -> bool,
) -> bool {
    let Some((name, which)) = rest.rsplit_once('.') else {
        return false;
    };
    if which != "NewValue" && which != "OldValue" {
        return false;
    }
    let Some(props) = props else {
        return false;
    };
    // The name with spaces and dots as `_`, compared without building it.
    let same = |raw: &str| {
        raw.len() == name.len()
            && raw.bytes().zip(name.bytes()).all(|(r, n)| {
                let r = if r == b' ' || r == b'.' { b'_' } else { r };
                r == n
            })
    };
    props
        .any_element(&mut |p| {
            let present = |k: &str| p.get(k).is_some_and(|v| !v.is_null());
            p.is_object()
                && p.get("Name").and_then(|n| n.string()).is_some_and(same)
                && present("NewValue")
                && present("OldValue")
                && visit_path(p.get(which), "", false, f)
        })
        .unwrap_or(false)
}

/// `ResultStatus` mapped to `event.outcome` (DESIGN §2): only `failed` and `false` (any
/// case) are failures; anything else, absent included, is a success.
fn raw_outcome<'i, V: Json<'i>>(status: Option<V>) -> &'static str {
    let failed = match status {
        Some(v) => match (v.string(), v.boolean()) {
            (Some(s), _) => s.eq_ignore_ascii_case("failed") || s.eq_ignore_ascii_case("false"),
            (None, Some(b)) => !b,
            _ => false,
        },
        None => false,
    };
    if failed { "failure" } else { "success" }
}

/// Reduces a client address to the IP it holds: `[ip]:port`, `ip:port`, `[ip]` and
/// `::ffff:a.b.c.d` give the address; anything that is not an IP (a host name) gives none.
pub fn reduce_ip(text: &str) -> Option<String> {
    canonical_ip(ip_host(text)?).map(Cow::into_owned)
}

/// The part of a client address that names its host: the address without brackets
/// and port (`[v6]:port`, `v4:port`), trimmed; `None` for brackets with something
/// other than a port after them. What [`canonical_ip`] makes of it is the address's
/// IP, so it depends on the host alone (a cache of reductions is keyed by it).
pub fn ip_host(text: &str) -> Option<&str> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return Some(&rest[..end]);
    }
    Some(match text.rsplit_once(':') {
        // One colon: IPv4 (or a name) with a port. More: a bare IPv6 address.
        Some((host, port)) if !host.contains(':') && is_port(port) => host,
        _ => text,
    })
}

/// A host's IP in canonical form (an IPv4-mapped IPv6 address as IPv4), `None` when
/// it is no IP: the host itself when it is written so already (the usual case, no copy
/// made: a new client address is reduced once per record when every record has one).
pub fn canonical_ip(host: &str) -> Option<Cow<'_, str>> {
    // An IPv4 address the parser takes (four decimal octets, no leading zero) is its
    // own canonical form.
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some(Cow::Borrowed(host));
    }
    let ip = host.parse::<IpAddr>().ok()?.to_canonical();
    Some(if written_as(&ip, host) {
        Cow::Borrowed(host)
    } else {
        Cow::Owned(ip.to_string())
    })
}

/// Whether `value` displays as `text`, compared as it is written (nothing allocated).
fn written_as(value: &impl std::fmt::Display, text: &str) -> bool {
    struct Same<'a>(&'a [u8]);
    impl std::fmt::Write for Same<'_> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            match self.0.strip_prefix(s.as_bytes()) {
                Some(rest) => {
                    self.0 = rest;
                    Ok(())
                }
                None => Err(std::fmt::Error),
            }
        }
    }
    let mut rest = Same(text.as_bytes());
    std::fmt::write(&mut rest, format_args!("{value}")).is_ok() && rest.0.is_empty()
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses an audit timestamp: RFC 3339, or ISO 8601 without an offset (taken as UTC,
/// as `CreationTime` is written), with `T` or a space between date and time.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Some(t) = ualhunt_query::time::audit_date_time(text.as_bytes()) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|fmt| NaiveDateTime::parse_from_str(text, fmt).ok())
    .map(|t| t.and_utc())
}

/// Parses the `CreationDate` of a PowerShell export: `/Date(ms)/` (.NET JSON: ms since
/// the epoch, UTC; an offset suffix is informational), ISO 8601, or a culture-formatted
/// date and time (`5/20/2023 11:07:00 AM` month first with AM/PM as en-US writes it;
/// `20/05/2023 11:07:00` and `20.05.2023 11:07:00` day first; `2023/05/20 11:07:00`).
/// No offset means UTC.
pub fn parse_creation_date(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Some(inner) = text
        .strip_prefix("/Date(")
        .and_then(|t| t.strip_suffix(")/"))
    {
        let digits = inner
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map_or(inner, |(i, _)| &inner[..i]);
        return DateTime::from_timestamp_millis(digits.parse().ok()?);
    }
    if let Some(t) = parse_timestamp(text) {
        return Some(t);
    }
    // Bytes, not a string slice: the text may end in any character (found by fuzzing).
    let has_meridiem = text.len() > 3 && {
        let end = &text.as_bytes()[text.len() - 2..];
        end.eq_ignore_ascii_case(b"AM") || end.eq_ignore_ascii_case(b"PM")
    };
    let formats: &[&str] = if has_meridiem {
        &["%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %I:%M %p"]
    } else {
        &[
            "%d/%m/%Y %H:%M:%S",
            "%d.%m.%Y %H:%M:%S",
            "%Y/%m/%d %H:%M:%S",
            "%d/%m/%Y %H:%M",
            "%d.%m.%Y %H:%M",
        ]
    };
    formats
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(text, fmt).ok())
        .map(|t| t.and_utc())
}

/// Reads a boolean-like flag value: `True`/`False` in any case (also `$true`, `1`, `0`).
pub fn parse_flag(text: &str) -> Option<bool> {
    let t = text.trim().trim_start_matches('$');
    if t.eq_ignore_ascii_case("true") || t == "1" {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t == "0" {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creation_date_ending_in_any_character_is_no_panic() {
        assert_eq!(parse_creation_date("3/5/2024 11:02:40\u{7fe}M"), None);
        assert_eq!(parse_creation_date("é\u{7fe}"), None);
        assert!(parse_creation_date("3/5/2024 11:02:40 AM").is_some());
    }

    fn with_record<R>(json: &str, f: impl FnOnce(Record<'_, '_>) -> R) -> R {
        let mut bytes = json.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut bytes).expect("valid json");
        let record = Record::new(tape.as_value()).expect("an object");
        f(record)
    }

    fn text_of(json: &str, field: &str) -> Option<String> {
        with_record(json, |r| r.text(&Field::parse(field)).map(Cow::into_owned))
    }

    /// An ECS `o365.audit` value reached both nested and by its dotted name was given
    /// twice to a visitor that reads every value (ES|QL saw a multi-value).
    #[test]
    fn ecs_audit_values_are_visited_once() {
        let doc = r#"{"event":{"action":"A"},"o365":{"audit":{"ApplicationId":"app"}}}"#;
        let mut seen = Vec::new();
        with_record(doc, |r| {
            r.any_value(&Field::parse("o365.audit.ApplicationId"), &mut |v| {
                seen.push(v.to_string());
                false
            })
        });
        assert_eq!(seen, ["app"]);
    }

    /// Regression: a repeated key read as the last value through the mapping's own keys
    /// (`event.action`) and as the first by its name (`o365.audit.Operation`).
    #[test]
    fn a_repeated_key_reads_as_its_last_value_every_way() {
        let json = r#"{"Operation":"A","Workload":"Exchange","Operation":"B","Extra":"x","Extra":"y","Nested":{"K":1,"K":2}}"#;
        assert_eq!(text_of(json, "event.action").as_deref(), Some("B"));
        assert_eq!(text_of(json, "o365.audit.Operation").as_deref(), Some("B"));
        assert_eq!(text_of(json, "o365.audit.Extra").as_deref(), Some("y"));
        assert_eq!(text_of(json, "o365.audit.Nested.K").as_deref(), Some("2"));
        let ecs = r#"{"event":{"action":"A"},"event":{"action":"B"}}"#;
        assert_eq!(text_of(ecs, "event.action").as_deref(), Some("B"));
    }

    #[test]
    fn an_empty_string_is_a_value_but_shows_nothing() {
        let json = r#"{"Operation":"X","ClientAppId":"","Target":[{"ID":""},{"ID":"x"}]}"#;
        assert_eq!(text_of(json, "o365.audit.ClientAppId").as_deref(), Some(""));
        let shown = |field: &str| {
            with_record(json, |r| {
                r.shown_text(&Field::parse(field)).map(Cow::into_owned)
            })
        };
        assert_eq!(shown("o365.audit.ClientAppId"), None);
        assert_eq!(shown("o365.audit.Target.ID").as_deref(), Some("x"));
    }

    const RAW: &str = r#"{"CreationTime":"2024-03-05T10:11:12","Id":"abc","Operation":"Set-MailboxAuditBypassAssociation","OrganizationId":"org","RecordType":1,"ResultStatus":"Succeeded","UserId":"NT AUTHORITY\\SYSTEM (x)","Workload":"Exchange","ClientIP":"[2001:db8::1]:443","ObjectId":"obj","Parameters":[{"Name":"Identity","Value":"first"},{"Name":"AuditBypassEnabled","Value":"True"},{"Name":"Identity","Value":"mbx@contoso.com"},{"Name":"Identity","Value":null}]}"#;

    #[test]
    fn raw_record_maps_like_the_elastic_pipeline() {
        assert_eq!(text_of(RAW, "event.dataset").as_deref(), Some("o365.audit"));
        assert_eq!(
            text_of(RAW, "data_stream.dataset").as_deref(),
            Some("o365.audit")
        );
        assert_eq!(text_of(RAW, "event.provider").as_deref(), Some("Exchange"));
        assert_eq!(
            text_of(RAW, "event.action").as_deref(),
            Some("Set-MailboxAuditBypassAssociation")
        );
        assert_eq!(text_of(RAW, "event.outcome").as_deref(), Some("success"));
        assert_eq!(
            text_of(RAW, "user.id").as_deref(),
            Some(r"NT AUTHORITY\SYSTEM (x)")
        );
        assert_eq!(text_of(RAW, "event.id").as_deref(), Some("abc"));
        assert_eq!(text_of(RAW, "organization.id").as_deref(), Some("org"));
        assert_eq!(text_of(RAW, "source.ip").as_deref(), Some("2001:db8::1"));
        assert_eq!(text_of(RAW, "o365.audit.RecordType").as_deref(), Some("1"));
        assert_eq!(
            text_of(RAW, "o365.audit.Parameters.Identity").as_deref(),
            Some("mbx@contoso.com")
        );
        assert_eq!(
            text_of(RAW, "o365.audit.Parameters.AuditBypassEnabled").as_deref(),
            Some("True")
        );
        assert_eq!(text_of(RAW, "host.name"), None);
        let ts = with_record(RAW, |r| r.timestamp()).unwrap();
        assert_eq!(ts.to_rfc3339(), "2024-03-05T10:11:12+00:00");
    }

    #[test]
    fn file_fields_come_from_the_keys_the_pipeline_renames_for_each_record_type() {
        // A OneDrive download (`SharePointFileOperation`, RecordType 6).
        let download = r#"{"RecordType":6,"Operation":"FileDownloaded","Workload":"OneDrive","ObjectId":"https://x-my.sharepoint.com/personal/a/Documents/q3.xlsx","SourceFileName":"q3.xlsx","SourceFileExtension":"xlsx","SourceRelativeUrl":"personal/a/Documents"}"#;
        assert_eq!(text_of(download, "file.name").as_deref(), Some("q3.xlsx"));
        assert_eq!(text_of(download, "file.extension").as_deref(), Some("xlsx"));
        assert_eq!(
            text_of(download, "file.directory").as_deref(),
            Some("personal/a/Documents")
        );
        assert_eq!(
            text_of(download, "url.original").as_deref(),
            Some("https://x-my.sharepoint.com/personal/a/Documents/q3.xlsx")
        );
        // The same keys on an Exchange record: the pipeline maps none of them.
        let exchange = download.replace(r#""RecordType":6"#, r#""RecordType":1"#);
        for field in [
            "file.name",
            "file.extension",
            "file.directory",
            "url.original",
        ] {
            assert_eq!(text_of(&exchange, field), None, "{field}");
        }
        let dlp = r#"{"RecordType":11,"SharePointMetaData":{"FileName":"a.docx","FileOwner":"o","FilePathUrl":"https://x/a.docx"}}"#;
        assert_eq!(text_of(dlp, "file.name").as_deref(), Some("a.docx"));
        assert_eq!(text_of(dlp, "file.owner").as_deref(), Some("o"));
        assert_eq!(
            text_of(dlp, "url.original").as_deref(),
            Some("https://x/a.docx")
        );
        let yammer = r#"{"RecordType":22,"FileName":"y.png"}"#;
        assert_eq!(text_of(yammer, "file.name").as_deref(), Some("y.png"));
    }

    #[test]
    fn command_lines_are_rebuilt_from_parameters() {
        let line = with_record(RAW, |r| r.command_line()).unwrap();
        assert_eq!(
            line,
            r#"Set-MailboxAuditBypassAssociation -Identity "first" -AuditBypassEnabled $true -Identity "mbx@contoso.com""#
        );
        let ecs = r#"{"event":{"action":"Set-X"},"o365":{"audit":{"Parameters":{"Identity":"a\"b","Enabled":"$False","Count":1}}}}"#;
        let line = with_record(ecs, |r| r.command_line()).unwrap();
        assert_eq!(line, r#"Set-X -Identity "a`"b" -Enabled $false -Count "1""#);
        let raw = r#"{"Operation":"Op","Parameters":"-Identity x"}"#;
        assert_eq!(
            with_record(raw, |r| r.command_line()).unwrap(),
            "Op -Identity x"
        );
        // Written into a used buffer: the same text, nothing of what it held before; a
        // record without an operation leaves it empty.
        for text in [RAW, ecs, raw, r#"{"Parameters":"-Identity x"}"#] {
            let mut line = String::from("left over from another record");
            let written = with_record(text, |r| r.write_command_line(&mut line));
            let want = with_record(text, |r| r.command_line());
            assert_eq!(written.then_some(line.clone()), want, "{text}");
            assert!(written || line.is_empty());
        }
    }

    #[test]
    fn result_status_table() {
        let cases = [
            ("\"Succeeded\"", "success"),
            ("\"success\"", "success"),
            ("\"PartiallySucceeded\"", "success"),
            ("\"True\"", "success"),
            ("\"Failed\"", "failure"),
            ("\"FALSE\"", "failure"),
            ("\"false\"", "failure"),
            ("\"Unknown\"", "success"),
            ("\"\"", "success"),
            ("false", "failure"),
            ("true", "success"),
            ("null", "success"),
        ];
        for (status, want) in cases {
            let json = format!(r#"{{"Operation":"X","ResultStatus":{status}}}"#);
            assert_eq!(
                text_of(&json, "event.outcome").as_deref(),
                Some(want),
                "{status}"
            );
        }
        assert_eq!(
            text_of(r#"{"Operation":"X"}"#, "event.outcome").as_deref(),
            Some("success")
        );
    }

    #[test]
    fn ecs_nested_dotted_and_mixed_read_the_same() {
        let docs = [
            r#"{"event":{"action":"A","provider":"Exchange","outcome":"success"},"user":{"id":"u"},"o365":{"audit":{"Parameters":{"Identity":"t"}}}}"#,
            r#"{"event.action":"A","event.provider":"Exchange","event.outcome":"success","user.id":"u","o365.audit.Parameters.Identity":"t"}"#,
            r#"{"event":{"action":"A"},"event.provider":"Exchange","event.outcome":"success","user":{"id":"u"},"o365.audit":{"Parameters.Identity":"t"}}"#,
            r#"{"_index":"x","_source":{"event":{"action":"A","provider":"Exchange","outcome":"success"},"user.id":"u","o365":{"audit.Parameters":{"Identity":"t"}}}}"#,
        ];
        for doc in docs {
            with_record(doc, |r| assert_eq!(r.shape(), Shape::Ecs, "{doc}"));
            assert_eq!(text_of(doc, "event.action").as_deref(), Some("A"), "{doc}");
            assert_eq!(
                text_of(doc, "event.provider").as_deref(),
                Some("Exchange"),
                "{doc}"
            );
            assert_eq!(
                text_of(doc, "event.outcome").as_deref(),
                Some("success"),
                "{doc}"
            );
            assert_eq!(text_of(doc, "user.id").as_deref(), Some("u"), "{doc}");
            assert_eq!(
                text_of(doc, "o365.audit.Parameters.Identity").as_deref(),
                Some("t"),
                "{doc}"
            );
            assert_eq!(
                text_of(doc, "event.dataset").as_deref(),
                Some("o365.audit"),
                "{doc}"
            );
        }
    }

    #[test]
    fn the_cel_wrapper_is_unwrapped() {
        let doc = r#"{"o365audit":{"Operation":"X","Workload":"Exchange","UserId":"u"}}"#;
        assert_eq!(text_of(doc, "event.action").as_deref(), Some("X"));
        assert_eq!(text_of(doc, "user.id").as_deref(), Some("u"));
    }

    #[test]
    fn ecs_dataset_is_read_when_present() {
        let doc = r#"{"event":{"dataset":"azure.auditlogs","action":"A"}}"#;
        assert_eq!(
            text_of(doc, "event.dataset").as_deref(),
            Some("azure.auditlogs")
        );
        assert_eq!(
            text_of(doc, "data_stream.dataset").as_deref(),
            Some("azure.auditlogs")
        );
        let doc = r#"{"data_stream":{"dataset":"o365.audit"},"event":{"action":"A"}}"#;
        assert_eq!(text_of(doc, "event.dataset").as_deref(), Some("o365.audit"));
    }

    #[test]
    fn string_parameters_become_raw() {
        let doc = r#"{"Operation":"X","Parameters":"-Identity \"a\""}"#;
        assert_eq!(
            text_of(doc, "o365.audit.Parameters._raw").as_deref(),
            Some("-Identity \"a\"")
        );
        assert_eq!(text_of(doc, "o365.audit.Parameters.Identity"), None);
    }

    #[test]
    fn source_ip_forms() {
        let cases = [
            ("[10.11.12.13]:12345", Some("10.11.12.13")),
            ("10.11.12.13:12345", Some("10.11.12.13")),
            ("10.11.12.13", Some("10.11.12.13")),
            ("::ffff:10.11.12.13", Some("10.11.12.13")),
            ("[::ffff:10.11.12.13]:12345", Some("10.11.12.13")),
            ("[2001:db8::abcd]:12345", Some("2001:db8::abcd")),
            ("2001:db8::abcd", Some("2001:db8::abcd")),
            ("[2001:db8::abcd]", Some("2001:db8::abcd")),
            ("[10.11.12.13]", Some("10.11.12.13")),
            ("localhost", None),
            ("[localhost]:12345", None),
            ("localhost:12345", None),
            ("cool.client.local:12345", None),
            ("[1.2.3.4]junk", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(reduce_ip(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn an_ipv4_address_is_its_own_canonical_text() {
        // The shortcut in `reduce_ip` against formatting the parsed address, over
        // spellings the IPv4 parser may or may not take.
        let octets = [
            "0", "1", "9", "10", "99", "100", "255", "256", "01", "001", "00", "-1", "+1", " 1",
            "1 ", "a", "",
        ];
        let mut taken = 0;
        for a in octets {
            for b in ["0", "255", "01", "256", "7"] {
                for text in [
                    format!("{a}.{b}.3.4"),
                    format!("10.{b}.{a}.4"),
                    format!("{a}.{b}.3"),
                    format!("{a}.{b}.3.4.5"),
                ] {
                    // `reduce_ip` trims the text first, whichever way it goes on.
                    let formatted = text
                        .trim()
                        .parse::<IpAddr>()
                        .ok()
                        .map(|ip| ip.to_canonical().to_string());
                    if let Ok(v4) = text.parse::<std::net::Ipv4Addr>() {
                        assert_eq!(v4.to_string(), text);
                        taken += 1;
                    }
                    assert_eq!(reduce_ip(&text), formatted, "{text:?}");
                }
            }
        }
        assert!(taken > 0);
    }

    /// An IPv6 host is its own text only when that is how the address is written
    /// (`written_as`); any other spelling is formatted, as before the shortcut.
    #[test]
    fn an_ipv6_host_is_borrowed_only_when_canonical() {
        let hosts = [
            "2001:db8::abcd",
            "2001:DB8::ABCD",
            "2001:0db8::abcd",
            "2001:db8:0:0:0:0:0:abcd",
            "2001:db8::0:abcd",
            "::1",
            "::",
            "0::0",
            "::ffff:10.11.12.13",
            "::ffff:a0b:c0d",
            "1:2:3:4:5:6:7:8",
            "1:0:0:2:0:0:0:3",
            "1::2:0:0:0:3",
            "fe80::1%eth0",
            "2001:db8::abcd:",
            "2001:db8::abc",
            "2001:db8::abcde",
            "::ffff:1.2.3.4.5",
        ];
        for host in hosts {
            let formatted = host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| ip.to_canonical().to_string());
            let got = canonical_ip(host);
            assert_eq!(got.as_deref(), formatted.as_deref(), "{host}");
            let borrowed = matches!(got, Some(Cow::Borrowed(_)));
            assert_eq!(borrowed, formatted.as_deref() == Some(host), "{host}");
        }
    }

    #[test]
    fn source_ip_takes_the_first_present_field() {
        let doc = r#"{"Operation":"X","ActorIpAddress":"3.3.3.3","ClientIP":"2.2.2.2"}"#;
        assert_eq!(text_of(doc, "source.ip").as_deref(), Some("2.2.2.2"));
        let doc = r#"{"Operation":"X","ClientIPAddress":"1.1.1.1","ClientIP":"2.2.2.2"}"#;
        assert_eq!(text_of(doc, "source.ip").as_deref(), Some("1.1.1.1"));
    }

    #[test]
    fn timestamps() {
        let t = |s| parse_timestamp(s).map(|t| t.to_rfc3339());
        assert_eq!(
            t("2020-02-17T17:12:03").as_deref(),
            Some("2020-02-17T17:12:03+00:00")
        );
        assert_eq!(
            t("2020-02-17T17:12:03.5Z").as_deref(),
            Some("2020-02-17T17:12:03.500+00:00")
        );
        assert_eq!(
            t("2020-02-17T19:12:03+02:00").as_deref(),
            Some("2020-02-17T17:12:03+00:00")
        );
        assert_eq!(
            t("2020-02-17 17:12:03").as_deref(),
            Some("2020-02-17T17:12:03+00:00")
        );
        assert_eq!(t("yesterday"), None);
        assert_eq!(t("2020-02-30T00:00:00"), None);
        assert_eq!(
            t("2020-02-17T17:12:03.123456789Z").as_deref(),
            Some("2020-02-17T17:12:03.123456789+00:00")
        );
        assert_eq!(t("2020-02-17T25:12:03"), None);
        // The fast path and chrono agree on what both accept.
        for s in [
            "2024-03-05T10:11:12",
            "2024-03-05T10:11:12.5Z",
            "1999-12-31T23:59:59.000001",
        ] {
            let fast = ualhunt_query::time::audit_date_time(s.as_bytes());
            let slow =
                NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|t| t.and_utc());
            assert_eq!(fast, slow, "{s}");
        }
    }

    #[test]
    fn powershell_objects_are_unwrapped_with_a_fallback_time() {
        let inner = r#"{"Id":"i","Operation":"X","Workload":"Exchange","UserId":"u"}"#;
        let doc = format!(
            r#"{{"RecordType":"ExchangeAdmin","CreationDate":"\/Date(1684580820000)\/","UserIds":"u","Operations":"X","AuditData":{inner},"ResultIndex":1,"ResultCount":5,"Identity":"i","IsValid":true,"ObjectState":"Unchanged"}}"#
        );
        assert_eq!(text_of(&doc, "event.action").as_deref(), Some("X"));
        assert_eq!(text_of(&doc, "user.id").as_deref(), Some("u"));
        with_record(&doc, |r| {
            assert!(r.is_recognised() && r.embedded().is_none());
            assert_eq!(
                r.timestamp().map(|t| t.to_rfc3339()).as_deref(),
                Some("2023-05-20T11:07:00+00:00")
            );
        });
        // CreationTime wins over CreationDate.
        let doc = doc.replace(
            r#""Id":"i""#,
            r#""CreationTime":"2024-01-02T03:04:05","Id":"i""#,
        );
        let t = with_record(&doc, |r| r.timestamp()).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-01-02T03:04:05+00:00");
    }

    #[test]
    fn string_audit_data_and_event_original_are_embedded_json() {
        let doc = r#"{"CreationDate":"5/20/2023 11:07:00 AM","Operations":"X","AuditData":"{\"Operation\":\"X\"}"}"#;
        let e = with_record(doc, |r| {
            r.embedded()
                .map(|e| (e.json.to_string(), e.fallback_time.map(String::from)))
        });
        assert_eq!(
            e,
            Some((
                r#"{"Operation":"X"}"#.to_string(),
                Some("5/20/2023 11:07:00 AM".to_string())
            ))
        );
        let doc = r#"{"event":{"original":" {\"Operation\":\"X\"}"}}"#;
        let e = with_record(doc, |r| r.embedded().map(|e| e.json.to_string()));
        assert_eq!(e.as_deref(), Some(r#" {"Operation":"X"}"#));
        let doc = r#"{"event.original":"{\"Operation\":\"X\"}","@timestamp":"t"}"#;
        assert!(with_record(doc, |r| r.embedded().is_some()));
        // An ECS document that has its fields is read as it is, original or not.
        for doc in [
            r#"{"event":{"action":"X","original":"{\"Operation\":\"Y\"}"}}"#,
            r#"{"event.action":"X","event":{"original":"{}"}}"#,
            r#"{"event":{"original":"not json"}}"#,
            r#"{"o365audit":{"Operation":"X"},"event":{"original":"{}"}}"#,
        ] {
            with_record(doc, |r| {
                assert!(r.embedded().is_none() && r.is_recognised(), "{doc}")
            });
        }
    }

    #[test]
    fn objects_of_no_record_shape_are_not_recognised() {
        for doc in [
            r#"{"foo":"X"}"#,
            r#"{"_source":{"foo":1}}"#,
            r#"{"AuditData":null}"#,
        ] {
            with_record(doc, |r| assert!(!r.is_recognised(), "{doc}"));
        }
        with_record(r#"{"Operation":"X"}"#, |r| assert!(r.is_recognised()));
    }

    #[test]
    fn creation_dates() {
        let t = |s| parse_creation_date(s).map(|t| t.to_rfc3339());
        let want = Some("2023-05-20T11:07:00+00:00".to_string());
        for s in [
            "/Date(1684580820000)/",
            "/Date(1684580820000+0200)/",
            "2023-05-20T11:07:00",
            "2023-05-20T11:07:00Z",
            "5/20/2023 11:07:00 AM",
            "05/20/2023 11:07:00 am",
            "20/05/2023 11:07:00",
            "20.05.2023 11:07:00",
            "2023/05/20 11:07:00",
        ] {
            assert_eq!(t(s), want, "{s}");
        }
        assert_eq!(
            t("5/20/2023 11:07:00 PM").as_deref(),
            Some("2023-05-20T23:07:00+00:00")
        );
        assert_eq!(
            t("/Date(-1000)/").as_deref(),
            Some("1969-12-31T23:59:59+00:00")
        );
        for s in [
            "/Date()/",
            "/Date(x)/",
            "soon",
            "13/20/2023 11:07:00 AM",
            "",
        ] {
            assert_eq!(t(s), None, "{s}");
        }
    }

    #[test]
    fn non_objects_are_not_records() {
        let mut bytes = b"[1,2]".to_vec();
        let tape = simd_json::to_tape(&mut bytes).unwrap();
        assert_eq!(
            Record::new(tape.as_value()).unwrap_err(),
            NotARecord::NotAnObject
        );
    }
}
