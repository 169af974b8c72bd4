//! The backfill's checkpoint: the running export (status URL, then the manifest) and per-file
//! progress, stored as JSON under one key in a compacted topic. A file's `lines_done` moves only
//! after Kafka acknowledged every event of those lines; `next_since` takes the manifest's
//! `transactionTime` only once every file is done.

use serde::{Deserialize, Serialize};

/// Everything a restarted backfill needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackfillState {
    /// The `_since` of the next run (previous run's `transactionTime`).
    pub next_since: Option<String>,
    /// The export in progress, if any.
    pub job: Option<JobState>,
}

/// One export in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Status URL from `Content-Location`.
    pub status_url: String,
    /// The `_since` it was started with.
    pub since: Option<String>,
    /// The manifest, once the export completed.
    pub manifest: Option<ManifestState>,
}

/// The manifest with per-file progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestState {
    /// Becomes `next_since` when every file is done.
    pub transaction_time: Option<String>,
    /// Whether file URLs need the bearer token.
    pub requires_access_token: bool,
    /// Output files.
    pub files: Vec<FileState>,
}

/// One NDJSON file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileState {
    /// Resource type.
    pub resource_type: String,
    /// Download URL.
    pub url: String,
    /// Resource count from the manifest, if given.
    pub count: Option<u64>,
    /// Lines whose events Kafka acknowledged.
    pub lines_done: u64,
    /// Every line handled.
    pub done: bool,
}

impl BackfillState {
    /// Decodes a stored checkpoint.
    pub fn from_bytes(b: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(b)
    }
    /// Encodes for storage.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("state serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = BackfillState {
            next_since: Some("2025-01-01T00:00:00Z".into()),
            job: Some(JobState {
                status_url: "http://h/s".into(),
                since: None,
                manifest: Some(ManifestState {
                    transaction_time: None,
                    requires_access_token: false,
                    files: vec![FileState {
                        resource_type: "Patient".into(),
                        url: "http://h/f".into(),
                        count: Some(3),
                        lines_done: 2,
                        done: false,
                    }],
                }),
            }),
        };
        assert_eq!(BackfillState::from_bytes(&s.to_bytes()).unwrap(), s);
    }
}
