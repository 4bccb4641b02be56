//! The ingest pipeline's enrichment, offline: fields Elastic's o365 pipeline adds to a
//! raw record from two of its own fields, `user_agent.*` parsed from
//! `user_agent.original` ([`user_agent`]) and `source.geo.*` / `source.as.*` looked up
//! for `source.ip` in MaxMind databases the user gives ([`geoip`]).
//!
//! Place in the flow: beside `record`. A rule names a derived field as a
//! [`Field::Derived`]; the scan evaluates its queries on an [`Enriched`] view of each
//! parsed record, which answers derived fields of a raw record here and every other
//! field (and every field of an ECS document, which the pipeline already enriched)
//! from the record. Values are computed only when a query or an evidence item asks,
//! and cached per distinct user agent and address (bounded caches shared by the
//! workers: the values are the same whoever computes them first). A derived field has
//! no literal of its own in a record's bytes: the prefilter gets none for it, but for a
//! user-agent name taken from the agent's text.

pub mod geoip;
pub mod user_agent;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use crate::field::{Field, Fields};
use crate::record::{Record, Shape, reduce_ip};
pub use geoip::{DatabaseInfo, GeoIp, GeoIpError, Location};
pub use user_agent::UserAgent;

/// A field the pipeline derives from another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Derived {
    /// `user_agent.name`.
    AgentName,
    /// `user_agent.version`.
    AgentVersion,
    /// `user_agent.os.name`.
    OsName,
    /// `user_agent.os.version`.
    OsVersion,
    /// `user_agent.os.full`.
    OsFull,
    /// `user_agent.device.name`.
    DeviceName,
    /// `source.geo.continent_name`.
    ContinentName,
    /// `source.geo.country_iso_code`.
    CountryIsoCode,
    /// `source.geo.country_name`.
    CountryName,
    /// `source.geo.region_iso_code`.
    RegionIsoCode,
    /// `source.geo.region_name`.
    RegionName,
    /// `source.geo.city_name`.
    CityName,
    /// `source.geo.location.lat`.
    Latitude,
    /// `source.geo.location.lon`.
    Longitude,
    /// `source.as.number`.
    AsNumber,
    /// `source.as.organization.name`.
    AsOrganization,
}

/// Every derived field with its ECS name.
pub const DERIVED: [(Derived, &str); 16] = [
    (Derived::AgentName, "user_agent.name"),
    (Derived::AgentVersion, "user_agent.version"),
    (Derived::OsName, "user_agent.os.name"),
    (Derived::OsVersion, "user_agent.os.version"),
    (Derived::OsFull, "user_agent.os.full"),
    (Derived::DeviceName, "user_agent.device.name"),
    (Derived::ContinentName, "source.geo.continent_name"),
    (Derived::CountryIsoCode, "source.geo.country_iso_code"),
    (Derived::CountryName, "source.geo.country_name"),
    (Derived::RegionIsoCode, "source.geo.region_iso_code"),
    (Derived::RegionName, "source.geo.region_name"),
    (Derived::CityName, "source.geo.city_name"),
    (Derived::Latitude, "source.geo.location.lat"),
    (Derived::Longitude, "source.geo.location.lon"),
    (Derived::AsNumber, "source.as.number"),
    (Derived::AsOrganization, "source.as.organization.name"),
];

/// Which enrichment a derived field needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The user-agent parser (always there: its patterns are embedded).
    UserAgent,
    /// A City or Country database.
    Geo,
    /// An ASN database.
    Asn,
}

impl Derived {
    /// The derived field of this ECS name, if it is one.
    pub fn parse(name: &str) -> Option<Derived> {
        DERIVED.iter().find(|(_, n)| *n == name).map(|(d, _)| *d)
    }

    /// Its ECS name.
    pub fn name(self) -> &'static str {
        DERIVED
            .iter()
            .find(|(d, _)| *d == self)
            .map_or("", |(_, n)| n)
    }

    /// What it is derived with.
    pub fn source(self) -> Source {
        match self {
            Derived::AgentName
            | Derived::AgentVersion
            | Derived::OsName
            | Derived::OsVersion
            | Derived::OsFull
            | Derived::DeviceName => Source::UserAgent,
            Derived::AsNumber | Derived::AsOrganization => Source::Asn,
            _ => Source::Geo,
        }
    }

    /// The bytes every record holding a value of this field contains: for the
    /// user-agent fields, `gent`, in both a raw record's `UserAgent` and an ECS
    /// document's `user_agent`; for the GeoIP and ASN fields, the field's key marked
    /// with [`KEY_MARK`]: which bytes a record holding a value has depends on the run
    /// ([`Enrichment::resolve`]: its key, only an ECS document having one, when the run
    /// has no database; nothing to search for when it has, a raw record's value being
    /// looked up for its address).
    pub fn key_literal(self) -> Option<String> {
        match self.source() {
            Source::UserAgent => Some("gent".to_string()),
            Source::Geo | Source::Asn => Some(format!("{KEY_MARK}{}", self.name())),
        }
    }

    /// The last name of its path: in the bytes of every ECS document that holds it
    /// (nested or dotted).
    pub fn key(self) -> &'static str {
        self.name().rsplit('.').next().unwrap_or("")
    }
}

/// How a GeoIP or ASN field's key is written among a query's literal strings: this
/// prefix (a NUL byte, which no text literal holds) and the field's ECS name. Never
/// searched as it is: [`Enrichment::resolve`] turns it into what a run searches.
pub const KEY_MARK: &str = "\u{0}Enriched=";

/// The derived field whose key a literal string written with [`KEY_MARK`] stands for.
pub fn marked_key(literal: &str) -> Option<Derived> {
    Derived::parse(literal.strip_prefix(KEY_MARK)?)
}

/// The most distinct user agents, and addresses, kept; past it a cache starts afresh.
const CACHE_MAX: usize = 1 << 14;

/// The enrichment of a run: the GeoIP databases given, and the caches.
#[derive(Debug, Default)]
pub struct Enrichment {
    geoip: GeoIp,
    /// The databases the run uses: those of `geoip`, or, for the merge of a sharded
    /// run, those its shards recorded.
    used: Vec<DatabaseInfo>,
    agents: Mutex<FxHashMap<Box<str>, Arc<UserAgent>>>,
    places: Mutex<FxHashMap<IpAddr, Arc<Location>>>,
}

impl Enrichment {
    /// The enrichment with these databases (none: only the user-agent fields).
    pub fn new(geoip: GeoIp) -> Enrichment {
        Enrichment {
            used: geoip.info(),
            geoip,
            ..Enrichment::default()
        }
    }

    /// What the merge of a sharded run knows of its shards' enrichment: the databases
    /// they used (which the merge itself does not read).
    pub fn recorded(used: Vec<DatabaseInfo>) -> Enrichment {
        Enrichment {
            used,
            ..Enrichment::default()
        }
    }

    /// The databases the run uses.
    pub fn used(&self) -> &[DatabaseInfo] {
        &self.used
    }

    /// The databases.
    pub fn geoip(&self) -> &GeoIp {
        &self.geoip
    }

    /// Whether fields of this source can have values for raw records.
    pub fn provides(&self, source: Source) -> bool {
        match source {
            Source::UserAgent => true,
            Source::Geo => self
                .used
                .iter()
                .any(|d| matches!(d.kind, geoip::Kind::City | geoip::Kind::Country)),
            Source::Asn => self.used.iter().any(|d| d.kind == geoip::Kind::Asn),
        }
    }

    /// A literal set one of which every matching record holds, as this run searches
    /// it: a GeoIP or ASN field's key ([`KEY_MARK`]) is the key's text when the run
    /// lacks the database that derives it (a raw record then has no value: only an ECS
    /// document carrying the field can match, and it holds the key); when the run has
    /// the database, a raw record gets a value without any such bytes, so the set
    /// requires nothing (`None`).
    pub fn resolve(&self, set: &[String]) -> Option<Vec<String>> {
        let mut out = Vec::with_capacity(set.len());
        for literal in set {
            match marked_key(literal) {
                Some(d) if self.provides(d.source()) => return None,
                Some(d) => out.push(d.key().to_string()),
                None => out.push(literal.clone()),
            }
        }
        Some(out)
    }

    /// Whether every literal of `set` is the key of a field this run cannot derive: a
    /// set no raw record meets (only an ECS document carrying the field does).
    pub fn lacks_all(&self, set: &[String]) -> bool {
        !set.is_empty()
            && set
                .iter()
                .all(|l| marked_key(l).is_some_and(|d| !self.provides(d.source())))
    }

    /// The parse of a user agent, cached.
    pub fn user_agent(&self, text: &str) -> Arc<UserAgent> {
        if let Some(found) = lock(&self.agents).get(text) {
            return found.clone();
        }
        // Parsed outside the lock: another worker may parse the same agent meanwhile,
        // to the same value.
        let parsed = Arc::new(user_agent::parse(text));
        let mut cache = lock(&self.agents);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(text.into(), parsed.clone());
        parsed
    }

    /// What the databases hold for an address, cached.
    pub fn location(&self, ip: IpAddr) -> Arc<Location> {
        if let Some(found) = lock(&self.places).get(&ip) {
            return found.clone();
        }
        let found = Arc::new(self.geoip.lookup(ip));
        let mut cache = lock(&self.places);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(ip, found.clone());
        found
    }

    /// The value of a derived field of a raw record, if it has one.
    pub fn value(&self, record: &Record<'_, '_>, field: Derived) -> Option<String> {
        match field.source() {
            Source::UserAgent => {
                let text = record.text(&Field::UserAgent)?;
                let ua = self.user_agent(&text);
                match field {
                    Derived::AgentName => Some(ua.name.clone()),
                    Derived::AgentVersion => ua.version.clone(),
                    Derived::OsName => ua.os_name.clone(),
                    Derived::OsVersion => ua.os_version.clone(),
                    Derived::OsFull => ua.os_full.clone(),
                    _ => Some(ua.device_name.clone()),
                }
            }
            source => {
                if !self.provides(source) {
                    return None;
                }
                let ip: IpAddr = reduce_ip(record.client_address()?)?.parse().ok()?;
                let place = self.location(ip);
                match field {
                    Derived::ContinentName => place.continent_name.clone(),
                    Derived::CountryIsoCode => place.country_iso_code.clone(),
                    Derived::CountryName => place.country_name.clone(),
                    Derived::RegionIsoCode => place.region_iso_code.clone(),
                    Derived::RegionName => place.region_name.clone(),
                    Derived::CityName => place.city_name.clone(),
                    Derived::Latitude => place.location.map(|(lat, _)| lat.to_string()),
                    Derived::Longitude => place.location.map(|(_, lon)| lon.to_string()),
                    Derived::AsNumber => place.as_number.map(|n| n.to_string()),
                    _ => place.as_organization.clone(),
                }
            }
        }
    }

    /// The first value of `field` that is not empty, as evidence shows it: derived for
    /// a raw record, read for an ECS document (and, for a raw record read from an ECS
    /// document's `event.original`, read from that document where it has the field).
    pub fn shown_text(&self, record: &Record<'_, '_>, field: &Field) -> Option<String> {
        self.shown(record, field).map(Cow::into_owned)
    }

    /// [`Enrichment::shown_text`] borrowing a value read from the record (no copy for
    /// evidence that is interned anyway).
    pub fn shown<'i>(&self, record: &Record<'_, 'i>, field: &Field) -> Option<Cow<'i, str>> {
        if is_enrichment(field)
            && let Some(shown) = record
                .document()
                .and_then(|doc| doc.shown_text(field).map(|v| v.into_owned()))
        {
            return Some(Cow::Owned(shown));
        }
        match field {
            Field::Derived(d) if record.shape() == Shape::Raw => self
                .value(record, *d)
                .filter(|v| !v.is_empty())
                .map(Cow::Owned),
            _ => record.shown_text(field),
        }
    }
}

impl Source {
    /// What the field needs, said to the user.
    pub fn need(self) -> &'static str {
        match self {
            Source::UserAgent => "user-agent parsing (built in)",
            Source::Geo => {
                "GeoIP enrichment: a City or Country database (--geoip-db), without which it \
                 has no value in a raw record"
            }
            Source::Asn => {
                "ASN enrichment: an ASN database (--geoip-db), without which it has no value \
                 in a raw record"
            }
        }
    }
}

/// What `ualhunt rules` and `--stats` say of a rule whose every match needs `field`,
/// which the run cannot derive: it needs `--geoip-db`, and until then only an ECS
/// document carrying the field is a candidate for it.
pub fn unenriched_note(field: Derived) -> String {
    format!(
        "{}'s key: it needs --geoip-db ({}); without one no raw record is parsed for it, \
         only an ECS document carrying the field",
        field.name(),
        match field.source() {
            Source::Asn => "an ASN database",
            _ => "a City or Country database",
        }
    )
}

/// The fields `names` reads that need enrichment `enrichment` lacks, each once, with
/// what it needs.
pub fn missing<'n>(
    names: impl IntoIterator<Item = &'n str>,
    enrichment: &Enrichment,
) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    for name in names {
        let source = match Derived::parse(name) {
            Some(d) => d.source(),
            // Fields of the same processors that ualhunt does not derive.
            None if name.starts_with("source.geo.") || name.starts_with("client.geo.") => {
                Source::Geo
            }
            None if name.starts_with("source.as.") || name.starts_with("client.as.") => Source::Asn,
            None => continue,
        };
        if enrichment.provides(source) && Derived::parse(name).is_some() {
            continue;
        }
        if !out.iter().any(|(n, _)| n == name) {
            out.push((name.to_string(), source.need()));
        }
    }
    out
}

/// A poisoned lock only means another worker panicked; the map is still a valid cache.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `field` is one the pipeline's enrichment writes into a document: a derived
/// field, or any other `source.geo.*`, `source.as.*` or `user_agent.*` field but
/// `user_agent.original` (which the record itself has).
fn is_enrichment(field: &Field) -> bool {
    match field {
        Field::Derived(_) => true,
        Field::Other(name) => ["source.geo.", "source.as.", "user_agent."]
            .iter()
            .any(|p| name.starts_with(p)),
        _ => false,
    }
}

/// A record seen with the pipeline's enrichment: what rules evaluate. A raw record read
/// from an ECS document's `event.original` ([`Record::document`]) is seen with that
/// document's own enrichment fields where it has them (Elastic evaluates the document),
/// and derives only those it lacks.
pub struct Enriched<'a, 'r, 't, 'i> {
    record: &'r Record<'t, 'i>,
    enrichment: &'a Enrichment,
}

impl<'a, 'r, 't, 'i> Enriched<'a, 'r, 't, 'i> {
    /// The view of `record` with `enrichment`.
    pub fn new(record: &'r Record<'t, 'i>, enrichment: &'a Enrichment) -> Self {
        Enriched { record, enrichment }
    }
}

impl Fields<Field> for Enriched<'_, '_, '_, '_> {
    fn any_value(&self, field: &Field, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        if is_enrichment(field)
            && let Some(doc) = self.record.document()
        {
            let mut has = false;
            let hit = doc.any_value(field, &mut |v| {
                has = true;
                pred(v)
            });
            if has {
                return hit;
            }
        }
        match field {
            Field::Derived(d) if self.record.shape() == Shape::Raw => self
                .enrichment
                .value(self.record, *d)
                .is_some_and(|v| pred(&v)),
            _ => self.record.any_value(field, pred),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_record<R>(json: &str, f: impl FnOnce(&Record<'_, '_>) -> R) -> R {
        let mut bytes = json.as_bytes().to_vec();
        let tape = simd_json::to_tape(&mut bytes).unwrap();
        let record = Record::new(tape.as_value()).unwrap();
        f(&record)
    }

    fn values(json: &str, enrichment: &Enrichment, name: &str) -> Vec<String> {
        with_record(json, |record| {
            let mut out = Vec::new();
            Enriched::new(record, enrichment).any_value(&Field::parse(name), &mut |v| {
                out.push(v.to_string());
                false
            });
            out
        })
    }

    #[test]
    fn raw_records_are_enriched_and_ecs_documents_read_as_they_are() {
        let e = Enrichment::default();
        let teams = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, \
                     like Gecko) Teams/1.3.00.30866 Chrome/80.0.3987.165 Electron/8.5.1 \
                     Safari/537.36";
        let raw = format!(
            r#"{{"Operation":"UserLoggedIn","ClientIP":"89.160.20.112","ExtendedProperties":[{{"Name":"UserAgent","Value":"{teams}"}}]}}"#
        );
        assert_eq!(values(&raw, &e, "user_agent.name"), ["Electron"]);
        assert_eq!(values(&raw, &e, "user_agent.os.full"), ["Windows 10"]);
        // No database: no GeoIP field, and the enrichment says it cannot provide one.
        assert!(values(&raw, &e, "source.geo.country_name").is_empty());
        assert!(!e.provides(Source::Geo));
        // The pipeline enriched the document already: its values, not a parse.
        let ecs = format!(
            r#"{{"event":{{"action":"x"}},"user_agent":{{"original":"{teams}","name":"Teams"}},"source":{{"geo":{{"country_name":"Norway"}}}}}}"#
        );
        assert_eq!(values(&ecs, &e, "user_agent.name"), ["Teams"]);
        assert_eq!(values(&ecs, &e, "source.geo.country_name"), ["Norway"]);
        // A record without an agent has no parsed fields at all.
        assert!(values(r#"{"Operation":"x"}"#, &e, "user_agent.name").is_empty());
    }

    #[test]
    fn names_round_trip() {
        for (d, name) in DERIVED {
            assert_eq!(Derived::parse(name), Some(d));
            assert_eq!(d.name(), name);
        }
        assert_eq!(Derived::parse("user_agent.original"), None);
    }
}
