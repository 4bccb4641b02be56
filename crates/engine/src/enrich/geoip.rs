//! `source.geo.*` and `source.as.*` from `source.ip`, as the o365 ingest pipeline's two
//! `geoip` processors write them, looked up in MaxMind DB files the user gives.
//!
//! Place in the flow: the binary opens the files (`--geoip-db`) into [`GeoIp`] when it
//! builds the configuration; [`super::Enrichment`] looks each distinct address up once
//! (its cache). A database is told by its metadata's `database_type`: a City or Country
//! database fills `source.geo.*`, an ASN database `source.as.*`. The fields are the
//! processor's defaults: `continent_name`, `country_iso_code`, `country_name`,
//! `region_iso_code` (the country's code, `-` and the most specific subdivision's),
//! `region_name`, `city_name`, `location`; `source.as.number` and
//! `source.as.organization.name` (the pipeline's renames of `asn` and
//! `organization_name`). Names are the databases' English ones.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::{Reader, geoip2};
use sha2::{Digest, Sha256};

/// What a database holds, from its metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A City database (`GeoIP2-City`, `GeoLite2-City`, …): `source.geo.*`.
    City,
    /// A Country database: `source.geo.*` without region and city.
    Country,
    /// An ASN database: `source.as.*`.
    Asn,
}

/// One opened database.
pub struct Database {
    reader: Reader<Vec<u8>>,
    /// What it holds.
    pub kind: Kind,
    /// Its `database_type`, as its metadata names it.
    pub database_type: String,
    /// The path it was opened from.
    pub path: PathBuf,
    /// SHA-256 of its bytes, hex: which data a run used.
    pub digest: String,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("kind", &self.kind)
            .field("database_type", &self.database_type)
            .field("path", &self.path)
            .field("digest", &self.digest)
            .finish()
    }
}

/// A database that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    /// Not readable, or not a MaxMind DB file.
    #[error("{path}: not a readable MaxMind DB file: {message}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// What the reader said.
        message: String,
    },
    /// A MaxMind DB file of a kind the pipeline does not read.
    #[error(
        "{path}: database type {database_type:?} is neither a City, a Country nor an ASN database"
    )]
    Kind {
        /// The path given.
        path: PathBuf,
        /// Its `database_type`.
        database_type: String,
    },
    /// Two databases of the same role (geo, or ASN).
    #[error("{path}: a second {role} database (the first: {first})")]
    Repeated {
        /// The path given.
        path: PathBuf,
        /// `geo` or `ASN`.
        role: &'static str,
        /// The first one's path.
        first: PathBuf,
    },
}

/// Which database a run used, as a shard's partial records it: a merge of stages run
/// with different databases is refused.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseInfo {
    /// What it holds.
    pub kind: Kind,
    /// Its `database_type`.
    pub database_type: String,
    /// Its file name.
    pub name: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// The databases of a run: at most one for `source.geo.*` and one for `source.as.*`.
#[derive(Debug, Default)]
pub struct GeoIp {
    geo: Option<Database>,
    asn: Option<Database>,
}

/// What the databases say about one address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Location {
    /// `source.geo.continent_name`.
    pub continent_name: Option<String>,
    /// `source.geo.country_iso_code`.
    pub country_iso_code: Option<String>,
    /// `source.geo.country_name`.
    pub country_name: Option<String>,
    /// `source.geo.region_iso_code`.
    pub region_iso_code: Option<String>,
    /// `source.geo.region_name`.
    pub region_name: Option<String>,
    /// `source.geo.city_name`.
    pub city_name: Option<String>,
    /// `source.geo.location` (latitude, longitude).
    pub location: Option<(f64, f64)>,
    /// `source.as.number`.
    pub as_number: Option<u32>,
    /// `source.as.organization.name`.
    pub as_organization: Option<String>,
}

impl GeoIp {
    /// Opens the databases given; the kind of each is read from its metadata.
    pub fn open(paths: &[PathBuf]) -> Result<GeoIp, GeoIpError> {
        let mut out = GeoIp::default();
        for path in paths {
            let db = Database::open(path)?;
            let (slot, role) = match db.kind {
                Kind::City | Kind::Country => (&mut out.geo, "geo"),
                Kind::Asn => (&mut out.asn, "ASN"),
            };
            if let Some(first) = slot {
                return Err(GeoIpError::Repeated {
                    path: path.clone(),
                    role,
                    first: first.path.clone(),
                });
            }
            *slot = Some(db);
        }
        Ok(out)
    }

    /// Whether a database fills `source.geo.*`.
    pub fn has_geo(&self) -> bool {
        self.geo.is_some()
    }

    /// Whether a database fills `source.as.*`.
    pub fn has_asn(&self) -> bool {
        self.asn.is_some()
    }

    /// The databases, geo first.
    pub fn databases(&self) -> impl Iterator<Item = &Database> {
        self.geo.iter().chain(self.asn.iter())
    }

    /// What identifies the databases, geo first.
    pub fn info(&self) -> Vec<DatabaseInfo> {
        self.databases()
            .map(|db| DatabaseInfo {
                kind: db.kind,
                database_type: db.database_type.clone(),
                name: db
                    .path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                sha256: db.digest.clone(),
            })
            .collect()
    }

    /// What the databases hold for `ip` (all fields `None` where none has it). A
    /// record the reader cannot decode counts as absent, as the processor skips it.
    pub fn lookup(&self, ip: IpAddr) -> Location {
        let mut out = Location::default();
        if let Some(db) = &self.geo {
            db.fill_geo(ip, &mut out);
        }
        if let Some(db) = &self.asn
            && let Ok(found) = db.reader.lookup(ip)
            && let Ok(Some(asn)) = found.decode::<geoip2::Asn>()
        {
            out.as_number = asn.autonomous_system_number;
            out.as_organization = asn.autonomous_system_organization.map(str::to_string);
        }
        out
    }
}

impl Database {
    fn open(path: &Path) -> Result<Database, GeoIpError> {
        let bytes = std::fs::read(path).map_err(|e| GeoIpError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let digest = format!("{:x}", Sha256::digest(&bytes));
        let reader = Reader::from_source(bytes).map_err(|e| GeoIpError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let database_type = reader.metadata().database_type.clone();
        let kind = if database_type.ends_with("-City") || database_type.contains("-City-") {
            Kind::City
        } else if database_type.ends_with("-Country") || database_type.contains("-Country-") {
            Kind::Country
        } else if database_type.ends_with("-ASN") || database_type.contains("-ASN-") {
            Kind::Asn
        } else {
            return Err(GeoIpError::Kind {
                path: path.to_path_buf(),
                database_type,
            });
        };
        Ok(Database {
            reader,
            kind,
            database_type,
            path: path.to_path_buf(),
            digest,
        })
    }

    fn fill_geo(&self, ip: IpAddr, out: &mut Location) {
        let Ok(found) = self.reader.lookup(ip) else {
            return;
        };
        let owned = |s: Option<&str>| s.map(str::to_string);
        match self.kind {
            Kind::City => {
                let Ok(Some(city)) = found.decode::<geoip2::City>() else {
                    return;
                };
                out.continent_name = owned(city.continent.names.english);
                out.country_iso_code = owned(city.country.iso_code);
                out.country_name = owned(city.country.names.english);
                out.city_name = owned(city.city.names.english);
                if let (Some(lat), Some(lon)) = (city.location.latitude, city.location.longitude) {
                    out.location = Some((lat, lon));
                }
                // The processor's region is the most specific subdivision.
                if let Some(sub) = city.subdivisions.last() {
                    out.region_name = owned(sub.names.english);
                    if let (Some(country), Some(code)) = (city.country.iso_code, sub.iso_code) {
                        out.region_iso_code = Some(format!("{country}-{code}"));
                    }
                }
            }
            Kind::Country | Kind::Asn => {
                let Ok(Some(country)) = found.decode::<geoip2::Country>() else {
                    return;
                };
                out.continent_name = owned(country.continent.names.english);
                out.country_iso_code = owned(country.country.iso_code);
                out.country_name = owned(country.country.names.english);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/geoip")
            .join(name)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_city_and_an_asn_database_fill_every_field() {
        let g = GeoIp::open(&[
            fixture("GeoLite2-ASN-Test.mmdb"),
            fixture("GeoLite2-City-Test.mmdb"),
        ])
        .unwrap();
        assert!(g.has_geo() && g.has_asn());
        let kinds: Vec<Kind> = g.info().iter().map(|d| d.kind).collect();
        assert_eq!(kinds, [Kind::City, Kind::Asn]);
        let place = g.lookup(ip("89.160.20.112"));
        assert_eq!(place.city_name.as_deref(), Some("Linköping"));
        assert_eq!(place.country_iso_code.as_deref(), Some("SE"));
        assert_eq!(place.country_name.as_deref(), Some("Sweden"));
        assert_eq!(place.continent_name.as_deref(), Some("Europe"));
        assert_eq!(place.region_iso_code.as_deref(), Some("SE-E"));
        assert_eq!(place.region_name.as_deref(), Some("Östergötland County"));
        assert_eq!(place.location, Some((58.4167, 15.6167)));
        assert_eq!(place.as_number, Some(29518));
        assert_eq!(place.as_organization.as_deref(), Some("Bredband2 AB"));
    }

    #[test]
    fn an_address_in_no_database_has_no_field() {
        let g = GeoIp::open(&[
            fixture("GeoLite2-City-Test.mmdb"),
            fixture("GeoLite2-ASN-Test.mmdb"),
        ])
        .unwrap();
        assert_eq!(g.lookup(ip("10.11.12.13")), Location::default());
        assert_eq!(g.lookup(ip("2001:db8::abcd")), Location::default());
    }

    #[test]
    fn ipv6_addresses_are_looked_up() {
        let g = GeoIp::open(&[fixture("GeoLite2-City-Test.mmdb")]).unwrap();
        let place = g.lookup(ip("2a02:cf40:add:4002:91f2:a9b2:e09a:6fc6"));
        assert_eq!(place.country_iso_code.as_deref(), Some("NO"));
        assert_eq!(place.city_name, None);
        assert_eq!(place.as_number, None);
    }

    #[test]
    fn a_country_database_fills_the_country_only() {
        let g = GeoIp::open(&[fixture("GeoIP2-Country-Test.mmdb")]).unwrap();
        assert_eq!(g.info()[0].kind, Kind::Country);
        let place = g.lookup(ip("89.160.20.112"));
        assert_eq!(place.country_name.as_deref(), Some("Sweden"));
        assert_eq!(place.city_name, None);
        assert_eq!(place.region_name, None);
    }

    #[test]
    fn other_files_and_a_second_database_of_a_role_are_refused() {
        let licence = fixture("LICENSE-MIT");
        let err = GeoIp::open(std::slice::from_ref(&licence)).unwrap_err();
        assert!(matches!(err, GeoIpError::Open { .. }), "{err}");
        let err = GeoIp::open(&[
            fixture("GeoLite2-City-Test.mmdb"),
            fixture("GeoIP2-Country-Test.mmdb"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("a second geo database"), "{err}");
        let missing = GeoIp::open(&[fixture("absent.mmdb")]).unwrap_err();
        assert!(missing.to_string().contains("absent.mmdb"), "{missing}");
    }
}
