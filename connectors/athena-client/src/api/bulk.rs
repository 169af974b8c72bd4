//! FHIR Bulk Data export of a whole practice (`Group/a-1.C-{pid}/$export`).
//!
//! 1. [`AthenaClient::bulk_export_kickoff`]: `GET /fhir/r4/Group/a-1.C-{pid}/$export` with
//!    `Prefer: respond-async` -> 202 + `Content-Location` (the status URL).
//! 2. [`AthenaClient::bulk_export_status`] / [`AthenaClient::bulk_export_wait`]: poll the status URL; 202 while
//!    running (honouring `Retry-After`, never faster than a minimum interval), 200 with the [`Manifest`].
//! 3. [`AthenaClient::bulk_download`]: stream one NDJSON output file as `serde_json::Value`s. The decoder is
//!    lenient to raw control characters inside strings (athena narrative text contains some).
//!
//! The bearer token is sent to output URLs only on athena's own host or when the manifest says
//! `requiresAccessToken` (pre-signed URLs on other hosts do not need it and must not receive it).
//! Every step is a GET (or DELETE) and safe to retry. athena intends bulk export for initial loads and
//! periodic syncs, not for near-real-time.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{Stream, StreamExt};
use http::Method;
use serde::Deserialize;
use url::Url;

use crate::api::fhir::{FHIR_JSON, ids};
use crate::client::{AthenaClient, PracticeId, decode};
use crate::error::{Error, parse_retry_after};
use crate::transport::Call;

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportRequest {
    /// `_type` resource types, e.g. `["Patient", "Condition"]` (empty = server default).
    pub types: Vec<String>,
    /// `_since`: the previous export's `transactionTime` for incremental runs.
    pub since: Option<DateTime<Utc>>,
}

/// A running export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportJob {
    /// The practice exported.
    pub practice: PracticeId,
    /// Status URL from `Content-Location`.
    pub status_url: Url,
}

/// One status poll's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportStatus {
    /// Still running (202).
    InProgress {
        /// `X-Progress` text, e.g. `42%`.
        progress: Option<String>,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
    /// Finished (200).
    Complete(Manifest),
}

/// The Bulk Data manifest.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Use as the next `_since`.
    #[serde(default)]
    pub transaction_time: Option<String>,
    /// The kick-off request URL.
    #[serde(default)]
    pub request: Option<String>,
    /// Whether output URLs need the bearer token.
    #[serde(default, deserialize_with = "crate::model::de::bool_lenient")]
    pub requires_access_token: bool,
    /// Output files.
    #[serde(default)]
    pub output: Vec<ManifestFile>,
    /// Error files (OperationOutcome NDJSON).
    #[serde(default)]
    pub error: Vec<ManifestFile>,
}

/// One output or error file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ManifestFile {
    /// Resource type.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Download URL.
    pub url: String,
    /// Resource count, if given.
    #[serde(default)]
    pub count: Option<u64>,
}

/// Status polling cadence.
#[derive(Debug, Clone)]
pub struct ExportPolling {
    /// Never poll faster than this, whatever `Retry-After` says.
    pub min_interval: Duration,
    /// Never wait longer than this between polls.
    pub max_interval: Duration,
    /// Give up (Error::BulkExport) after this long.
    pub timeout: Duration,
}

impl Default for ExportPolling {
    fn default() -> Self {
        ExportPolling {
            min_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(120),
            timeout: Duration::from_secs(6 * 3600),
        }
    }
}

const STATUS_ROUTE: &str = "/fhir/r4/$export-status";

impl AthenaClient {
    /// `GET /fhir/r4/Group/a-1.C-{pid}/$export` with `Prefer: respond-async`. Safe to retry (a duplicate
    /// kick-off only wastes athena work).
    pub async fn bulk_export_kickoff(
        &self,
        practice: PracticeId,
        req: &ExportRequest,
    ) -> Result<ExportJob, Error> {
        let group = ids::export_group(practice);
        let mut q = Vec::new();
        if !req.types.is_empty() {
            q.push(("_type".to_owned(), req.types.join(",")));
        }
        if let Some(since) = req.since {
            q.push((
                "_since".to_owned(),
                since.to_rfc3339_opts(SecondsFormat::Secs, true),
            ));
        }
        let call = Call::get(
            "/fhir/r4/Group/{id}/$export",
            self.url(&["fhir", "r4", "Group", &group, "$export"]),
            practice.to_string(),
        )
        .query(q)
        .header("Accept", FHIR_JSON)
        .header("Prefer", "respond-async");
        let reply = self.send(&call).await?;
        if reply.status.as_u16() != 202 {
            return Err(Error::BulkExport(format!(
                "kick-off answered HTTP {} instead of 202",
                reply.status.as_u16()
            )));
        }
        let loc = reply
            .headers
            .get(http::header::CONTENT_LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::BulkExport("kick-off without Content-Location".into()))?;
        let status_url = Url::parse(loc)
            .or_else(|_| self.config().base_url.join(loc))
            .map_err(|_| Error::BulkExport("unusable status URL".into()))?;
        Ok(ExportJob {
            practice,
            status_url,
        })
    }

    /// `GET {status_url}` — one status poll. Safe to retry.
    pub async fn bulk_export_status(&self, job: &ExportJob) -> Result<ExportStatus, Error> {
        let call = Call::get(
            STATUS_ROUTE,
            job.status_url.clone(),
            job.practice.to_string(),
        )
        .header("Accept", "application/json");
        let call = Call {
            bearer: self.same_origin(&job.status_url),
            ..call
        };
        let reply = self.send(&call).await?;
        if reply.status.as_u16() == 202 {
            let progress = reply
                .headers
                .get("x-progress")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return Ok(ExportStatus::InProgress {
                progress,
                retry_after: parse_retry_after(&reply.headers),
            });
        }
        Ok(ExportStatus::Complete(decode(
            STATUS_ROUTE,
            &reply.body,
            false,
        )?))
    }

    /// Poll until complete, honouring `Retry-After` within `[min_interval, max_interval]`.
    pub async fn bulk_export_wait(
        &self,
        job: &ExportJob,
        polling: &ExportPolling,
    ) -> Result<Manifest, Error> {
        let deadline = tokio::time::Instant::now() + polling.timeout;
        loop {
            match self.bulk_export_status(job).await? {
                ExportStatus::Complete(m) => return Ok(m),
                ExportStatus::InProgress {
                    progress,
                    retry_after,
                } => {
                    let wait = retry_after.unwrap_or(polling.min_interval).clamp(
                        polling.min_interval,
                        polling.max_interval.max(polling.min_interval),
                    );
                    if tokio::time::Instant::now() + wait > deadline {
                        return Err(Error::BulkExport(format!(
                            "not complete within {:?}",
                            polling.timeout
                        )));
                    }
                    tracing::debug!(
                        progress = progress.as_deref().unwrap_or("?"),
                        wait_ms = wait.as_millis() as u64,
                        "Bulk export still running."
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// `DELETE {status_url}` — cancel / clean up an export. Safe to retry.
    pub async fn bulk_export_cancel(&self, job: &ExportJob) -> Result<(), Error> {
        let mut call = Call::get(
            STATUS_ROUTE,
            job.status_url.clone(),
            job.practice.to_string(),
        );
        call.method = Method::DELETE;
        call.bearer = self.same_origin(&job.status_url);
        self.send(&call).await.map(|_| ())
    }

    /// Stream one NDJSON file as JSON values (one per line). The HTTP request is retried before the first
    /// byte; a failure mid-stream ends the stream with an error item (restart the file, dedupe by id).
    pub async fn bulk_download(
        &self,
        practice: PracticeId,
        file: &ManifestFile,
        requires_access_token: bool,
    ) -> Result<Pin<Box<dyn Stream<Item = Result<serde_json::Value, Error>> + Send>>, Error> {
        let url = Url::parse(&file.url)
            .or_else(|_| self.config().base_url.join(&file.url))
            .map_err(|_| Error::BulkExport("unusable output URL".into()))?;
        let mut call = Call::get("/fhir/r4/$export-output", url.clone(), practice.to_string())
            .header("Accept", "application/fhir+ndjson");
        call.bearer = requires_access_token || self.same_origin(&url);
        let resp = self.send_streaming(&call).await?;
        Ok(Box::pin(ndjson_stream(resp.bytes_stream())))
    }

    fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.config().base_url.origin()
    }
}

/// Turn a byte stream into NDJSON values with [`NdjsonDecoder`].
pub fn ndjson_stream<S, E>(bytes: S) -> impl Stream<Item = Result<serde_json::Value, Error>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send,
{
    let state = (
        Box::pin(bytes),
        NdjsonDecoder::default(),
        VecDeque::new(),
        false,
    );
    futures::stream::unfold(state, |(mut s, mut dec, mut q, mut eof)| async move {
        loop {
            if let Some(item) = q.pop_front() {
                return Some((item, (s, dec, q, eof)));
            }
            if eof {
                return None;
            }
            match s.next().await {
                Some(Ok(chunk)) => q.extend(dec.push(&chunk)),
                Some(Err(e)) => {
                    eof = true;
                    q.push_back(Err(Error::Transport(format!(
                        "NDJSON download interrupted: {e}"
                    ))));
                }
                None => {
                    eof = true;
                    q.extend(dec.finish());
                }
            }
        }
    })
}

/// Incremental NDJSON decoder. Records end at a newline *outside* a JSON string; raw control characters
/// inside strings (invalid JSON, but seen in athena narrative text) are escaped as `\u00XX` before parsing.
#[derive(Debug, Default)]
pub struct NdjsonDecoder {
    buf: Vec<u8>,
    in_string: bool,
    escape: bool,
}

impl NdjsonDecoder {
    /// Feed a chunk; returns the records completed by it.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<serde_json::Value, Error>> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                    self.buf.push(b);
                } else if b == b'\\' {
                    self.escape = true;
                    self.buf.push(b);
                } else if b == b'"' {
                    self.in_string = false;
                    self.buf.push(b);
                } else if b < 0x20 {
                    self.buf.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                } else {
                    self.buf.push(b);
                }
            } else if b == b'\n' {
                if let Some(r) = self.take() {
                    out.push(r);
                }
            } else {
                if b == b'"' {
                    self.in_string = true;
                }
                self.buf.push(b);
            }
        }
        out
    }

    /// End of input: the last record, if it had no trailing newline.
    pub fn finish(&mut self) -> Option<Result<serde_json::Value, Error>> {
        self.in_string = false;
        self.escape = false;
        self.take()
    }

    fn take(&mut self) -> Option<Result<serde_json::Value, Error>> {
        let line = std::mem::take(&mut self.buf);
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(
            serde_json::from_slice(&line)
                .map_err(|e| Error::decode("/fhir/r4/$export-output", &e, false)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lenient_and_chunked() {
        let input = b"{\"id\":\"1\",\"text\":\"line\x01one\ttab\"}\r\n\n{\"id\":\"2\",\"note\":\"raw\nnewline \\\" quote\"}\n{\"id\":3}";
        for split in [1usize, 3, 7, input.len()] {
            let mut d = NdjsonDecoder::default();
            let mut got = Vec::new();
            for c in input.chunks(split) {
                got.extend(d.push(c));
            }
            got.extend(d.finish());
            let vals: Vec<serde_json::Value> = got.into_iter().map(|r| r.unwrap()).collect();
            assert_eq!(vals.len(), 3, "split {split}");
            assert_eq!(vals[0]["text"], "line\u{1}one\ttab");
            assert_eq!(vals[1]["note"], "raw\nnewline \" quote");
            assert_eq!(vals[2]["id"], 3);
        }
    }

    #[test]
    fn ndjson_bad_line_is_an_item_not_the_end() {
        let mut d = NdjsonDecoder::default();
        let got = d.push(b"{\"id\":1}\n{broken\n{\"id\":2}\n");
        assert_eq!(got.len(), 3);
        assert!(got[1].is_err());
        assert!(got[2].is_ok());
    }

    #[tokio::test]
    async fn ndjson_stream_yields_values() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"{\"a\":1}\n{\"a\"")),
            Ok(Bytes::from_static(b":2}\n")),
        ];
        let vals: Vec<_> = ndjson_stream(futures::stream::iter(chunks)).collect().await;
        assert_eq!(vals.len(), 2);
        assert_eq!(vals[1].as_ref().unwrap()["a"], 2);
    }

    #[test]
    fn manifest_decodes() {
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "transactionTime":"2024-01-01T00:00:00Z","request":"x","requiresAccessToken":"true",
            "output":[{"type":"Patient","url":"https://h/1.ndjson","count":2}],"error":[]}))
        .unwrap();
        assert!(m.requires_access_token);
        assert_eq!(m.output[0].resource_type, "Patient");
    }
}
