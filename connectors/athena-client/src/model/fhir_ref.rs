//! FHIR references (`Reference.reference`), parsed strictly, because they arrive from outside
//! (push notifications) and end up in request paths.
//!
//! Accepted forms (FHIR R4 §2.3.0 "Literal references"):
//! - relative `Type/id` and `Type/id/_history/version`;
//! - absolute `https://host/base/Type/id[/_history/version]` (the last segments name the
//!   resource; the base is kept for the caller to compare with its own);
//! - `urn:uuid:<uuid>` and `urn:oid:<oid>` ([`Reference::Urn`]): valid FHIR, but they name a
//!   resource inside a bundle, not one a server can read.
//!
//! Anything else (contained `#id` references, query strings, a type that is not a FHIR type name,
//! an id outside FHIR's `[A-Za-z0-9\-\.]{1,64}`) is a [`FhirRefError`], never a panic and never
//! a path segment that could escape the resource.

use std::fmt;

/// A literal reference to a resource a FHIR server can read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FhirRef {
    /// The server base of an absolute reference (`https://host/fhir/r4`), `None` when relative.
    pub base: Option<String>,
    /// Resource type, e.g. `Encounter`.
    pub resource_type: String,
    /// Logical id, e.g. `a-195900.encounter-1`.
    pub id: String,
    /// Version id of a `/_history/{version}` reference.
    pub version: Option<String>,
}

/// Any literal reference a notification may carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A readable resource (relative or absolute, optionally versioned).
    Resource(FhirRef),
    /// `urn:uuid:...` or `urn:oid:...`: names a resource inside a bundle; not readable by id.
    Urn(String),
}

/// Why a string is not a usable FHIR reference (never echoes the input: it may hold ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FhirRefError {
    /// Empty, or only whitespace.
    #[error("empty reference")]
    Empty,
    /// A contained (`#id`) reference, or one with a query or fragment.
    #[error("contained, query or fragment references cannot be read")]
    NotLiteral,
    /// Not `Type/id[/_history/v]` (too few or too many segments, empty segments).
    #[error("not Type/id or Type/id/_history/version")]
    Shape,
    /// The resource type is not a FHIR type name (`[A-Z][A-Za-z]*`).
    #[error("invalid resource type")]
    ResourceType,
    /// The id or version is not `[A-Za-z0-9\-\.]{1,64}`.
    #[error("invalid id or version")]
    Id,
    /// A `urn:` that is neither `urn:uuid:` nor `urn:oid:`, or has an empty value.
    #[error("unsupported urn reference")]
    Urn,
}

/// FHIR `id` datatype: `[A-Za-z0-9\-\.]{1,64}`, and not only dots (`.` and `..` are legal by
/// the pattern but would be path navigation in a URL).
fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && s.bytes().any(|b| b != b'.')
}

/// A FHIR resource type name: an upper-case ASCII letter then letters (at most 64).
fn valid_type(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_uppercase())
        && s.len() <= 64
        && b.all(|c| c.is_ascii_alphabetic())
}

impl FhirRef {
    /// A relative, unversioned reference, validated like a parsed one.
    pub fn new(resource_type: &str, id: &str) -> Result<Self, FhirRefError> {
        if !valid_type(resource_type) {
            return Err(FhirRefError::ResourceType);
        }
        if !valid_id(id) {
            return Err(FhirRefError::Id);
        }
        Ok(FhirRef {
            base: None,
            resource_type: resource_type.to_owned(),
            id: id.to_owned(),
            version: None,
        })
    }

    /// Parses a reference that must name a readable resource (a `urn:` is an error here).
    pub fn parse(s: &str) -> Result<Self, FhirRefError> {
        match Reference::parse(s)? {
            Reference::Resource(r) => Ok(r),
            Reference::Urn(_) => Err(FhirRefError::Urn),
        }
    }

    /// `Type/id` (without base and version): the relative reference of the current version.
    pub fn relative(&self) -> String {
        format!("{}/{}", self.resource_type, self.id)
    }
}

impl fmt::Display for FhirRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = &self.base {
            write!(f, "{b}/")?;
        }
        write!(f, "{}/{}", self.resource_type, self.id)?;
        if let Some(v) = &self.version {
            write!(f, "/_history/{v}")?;
        }
        Ok(())
    }
}

impl Reference {
    /// Parses any literal reference (see the module docs for the accepted forms).
    pub fn parse(s: &str) -> Result<Self, FhirRefError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(FhirRefError::Empty);
        }
        if s.contains(['#', '?']) {
            return Err(FhirRefError::NotLiteral);
        }
        if let Some(rest) = s.strip_prefix("urn:") {
            let ok = rest
                .strip_prefix("uuid:")
                .map(|u| u.len() == 36 && u.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
                .or_else(|| {
                    rest.strip_prefix("oid:").map(|o| {
                        !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                    })
                })
                .unwrap_or(false);
            return if ok {
                Ok(Reference::Urn(s.to_owned()))
            } else {
                Err(FhirRefError::Urn)
            };
        }
        let (base, path) = match s.split_once("://") {
            Some((scheme, rest)) => {
                if !matches!(scheme, "http" | "https") {
                    return Err(FhirRefError::Shape);
                }
                // The host is up to the first '/', and the path must follow it.
                let slash = rest.find('/').ok_or(FhirRefError::Shape)?;
                if slash == 0 {
                    return Err(FhirRefError::Shape);
                }
                (Some((scheme, rest)), &rest[slash + 1..])
            }
            None => (None, s),
        };
        let segs: Vec<&str> = path.split('/').collect();
        if segs.iter().any(|x| x.is_empty()) {
            return Err(FhirRefError::Shape);
        }
        // The resource is named by the last two segments, or the last four when versioned.
        let (tail, version) = match segs.as_slice() {
            [.., _, _, "_history", v] => (segs.len() - 4, Some(*v)),
            [.., _, "_history"] => return Err(FhirRefError::Shape),
            [.., _, _] => (segs.len() - 2, None),
            _ => return Err(FhirRefError::Shape),
        };
        if base.is_none() && tail != 0 {
            // A relative reference is exactly Type/id[/_history/v].
            return Err(FhirRefError::Shape);
        }
        let (ty, id) = (segs[tail], segs[tail + 1]);
        if !valid_type(ty) {
            return Err(FhirRefError::ResourceType);
        }
        if !valid_id(id) || version.is_some_and(|v| !valid_id(v)) {
            return Err(FhirRefError::Id);
        }
        let base = base.map(|(scheme, rest)| {
            let host_and_path = &rest[..rest.find('/').unwrap_or(rest.len())];
            let mut b = format!("{scheme}://{host_and_path}");
            for seg in &segs[..tail] {
                b.push('/');
                b.push_str(seg);
            }
            b
        });
        Ok(Reference::Resource(FhirRef {
            base,
            resource_type: ty.to_owned(),
            id: id.to_owned(),
            version: version.map(str::to_owned),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(s: &str) -> FhirRef {
        match Reference::parse(s) {
            Ok(Reference::Resource(r)) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn relative() {
        let r = res("Patient/a-432.E-528595");
        assert_eq!(
            (r.resource_type.as_str(), r.id.as_str()),
            ("Patient", "a-432.E-528595")
        );
        assert_eq!((r.base, r.version), (None, None));
    }

    #[test]
    fn versioned_relative() {
        let r = res("Encounter/a-195900.encounter-1/_history/2");
        assert_eq!(r.resource_type, "Encounter");
        assert_eq!(r.id, "a-195900.encounter-1");
        assert_eq!(r.version.as_deref(), Some("2"));
        assert_eq!(r.relative(), "Encounter/a-195900.encounter-1");
        assert_eq!(r.to_string(), "Encounter/a-195900.encounter-1/_history/2");
    }

    #[test]
    fn absolute_and_absolute_versioned() {
        let r = res("https://api.platform.athenahealth.com/fhir/r4/Encounter/e1");
        assert_eq!(
            r.base.as_deref(),
            Some("https://api.platform.athenahealth.com/fhir/r4")
        );
        assert_eq!(
            (r.resource_type.as_str(), r.id.as_str()),
            ("Encounter", "e1")
        );
        assert_eq!(r.version, None);
        let r = res("http://x/Observation/o-1/_history/7");
        assert_eq!(r.base.as_deref(), Some("http://x"));
        assert_eq!(
            (
                r.resource_type.as_str(),
                r.id.as_str(),
                r.version.as_deref()
            ),
            ("Observation", "o-1", Some("7"))
        );
        assert_eq!(r.to_string(), "http://x/Observation/o-1/_history/7");
    }

    #[test]
    fn urns_are_references_but_not_readable() {
        let u = "urn:uuid:0f7e2c4e-1111-4222-8333-444455556666";
        assert_eq!(Reference::parse(u), Ok(Reference::Urn(u.into())));
        assert_eq!(
            Reference::parse("urn:oid:1.2.3"),
            Ok(Reference::Urn("urn:oid:1.2.3".into()))
        );
        assert_eq!(FhirRef::parse(u), Err(FhirRefError::Urn));
        assert_eq!(Reference::parse("urn:uuid:"), Err(FhirRefError::Urn));
        assert_eq!(Reference::parse("urn:isbn:1"), Err(FhirRefError::Urn));
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        use FhirRefError::*;
        for (s, want) in [
            ("", Empty),
            ("   ", Empty),
            ("#contained", NotLiteral),
            ("Patient?name=x", NotLiteral),
            ("Patient", Shape),
            ("Patient/", Shape),
            ("/Patient/1", Shape),
            ("Patient//1", Shape),
            ("a/Patient/1", Shape),
            ("Patient/1/_history", Shape),
            ("Patient/1/_history/", Shape),
            ("Patient/1/extra", Shape),
            ("_history/2", ResourceType),
            ("patient/1", ResourceType),
            ("Pat1ent/1", ResourceType),
            ("Patient/../../admin", Shape),
            ("Patient/..", Id),
            ("Patient/a b", Id),
            ("Patient/a%2F", Id),
            (&format!("Patient/{}", "x".repeat(65)), Id),
            ("Patient/1/_history/v 2", Id),
            ("ftp://h/Patient/1", Shape),
            ("https://", Shape),
            ("https://host", Shape),
            ("https:///Patient/1", Shape),
            ("Patient/ü", Id),
        ] {
            assert_eq!(Reference::parse(s), Err(want), "{s:?}");
        }
        assert_eq!(
            FhirRef::new("Patient", "1").unwrap().relative(),
            "Patient/1"
        );
        assert_eq!(FhirRef::new("x", "1"), Err(FhirRefError::ResourceType));
        assert_eq!(FhirRef::new("Patient", ""), Err(FhirRefError::Id));
    }
}
