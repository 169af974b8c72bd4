//! A secret value that never prints itself.
//!
//! In TOML a secret is either a string (which may use `${VAR}` interpolation, see
//! [`crate::config`]) or a table `{ file = "/run/secrets/x" }` whose file content (trailing
//! newline trimmed) is the secret, so Kubernetes and Docker secrets can be mounted as files.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

/// A redacting secret: `Debug` and `Display` print `***`, and it has no `Serialize`, so it cannot
/// end up in a log line, an error message or an admin API response by accident.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The secret value, for the one place that must send it (an auth header, a client config).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether the secret is empty (validation rejects empty secrets where one is required).
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }

    /// The one rule every binary applies to a shared secret (webhook HMAC key, bearer token):
    /// at least [`MIN_SHARED_SECRET_CHARS`] characters. The error names `key`, never the value.
    pub fn validate_shared(&self, key: &str) -> Result<(), crate::CoreError> {
        if self.0.expose_secret().chars().count() < MIN_SHARED_SECRET_CHARS {
            return Err(crate::CoreError::config(
                key,
                format!("must be at least {MIN_SHARED_SECRET_CHARS} characters"),
            ));
        }
        Ok(())
    }
}

/// Shortest shared secret any binary accepts: 16 characters (a guessable HMAC key makes every
/// signature forgeable).
pub const MIN_SHARED_SECRET_CHARS: usize = 16;

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<Secret> for SecretString {
    fn from(s: Secret) -> Self {
        s.0
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Inline(String),
            File { file: String },
        }
        match Repr::deserialize(deserializer)? {
            Repr::Inline(s) => Ok(Secret::new(s)),
            Repr::File { file } => {
                // The path may be shown; the content never is.
                let content = std::fs::read_to_string(&file).map_err(|e| {
                    serde::de::Error::custom(format!("cannot read secret file {file}: {e}"))
                })?;
                Ok(Secret::new(content.trim_end_matches(['\n', '\r'])))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Holder {
        a: Secret,
        b: Secret,
    }

    #[test]
    fn short_shared_secrets_are_refused_naming_the_key() {
        let e = Secret::new("fifteen-chars!!")
            .validate_shared("a.b.secret")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.b.secret") && !e.contains("fifteen"), "{e}");
        Secret::new("sixteen-chars!!!")
            .validate_shared("a.b.secret")
            .unwrap();
    }

    #[test]
    fn inline_and_file_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "from-file-value\n").unwrap();
        let text = format!(
            "a = \"inline-value\"\nb = {{ file = \"{}\" }}\n",
            path.display()
        );
        let h: Holder = toml::from_str(&text).unwrap();
        assert_eq!(h.a.expose(), "inline-value");
        assert_eq!(h.b.expose(), "from-file-value");
        let printed = format!("{h:?} {} {}", h.a, h.b);
        assert!(!printed.contains("inline-value"), "{printed}");
        assert!(!printed.contains("from-file-value"), "{printed}");
    }
}
