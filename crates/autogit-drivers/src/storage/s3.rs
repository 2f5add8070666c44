//! [`S3`]: a bucket of an S3-compatible service (AWS S3, MinIO, Ceph RGW, `rclone serve s3`)
//! over reqwest/rustls, every request signed with SigV4 (`crate::dns::sigv4`, service `s3`,
//! `x-amz-content-sha256` the payload's hash). Path-style URLs (`<endpoint>/<bucket>/<key>`),
//! `ListObjectsV2`, and multipart uploads (`CreateMultipartUpload`, `UploadPart`,
//! `CompleteMultipartUpload`; aborted on failure) for archives larger than one part.
//! <https://docs.aws.amazon.com/AmazonS3/latest/API/API_Operations_Amazon_Simple_Storage_Service.html>
//!
//! The secret key is a [`SecretString`]: it is never in `Debug`, a message or a URL.

use super::{RemoteObject, Storage, StorageError, check_name, io_err};
use crate::dns::{sigv4, xml};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use std::io::SeekFrom;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// The smallest part S3 accepts (all but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// The default part size: archives up to this go in one `PutObject`.
pub const DEFAULT_PART_SIZE: u64 = 64 << 20;

/// How to reach the bucket.
pub struct S3Config {
    /// The target's name (messages).
    pub name: String,
    /// `http(s)://host[:port]`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Prepended to every key (`gitlab/`).
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    /// Which variables held the keys (named in an authentication error).
    pub key_envs: (String, String),
    /// Part size of multipart uploads (at least [`MIN_PART_SIZE`]).
    pub part_size: u64,
    /// The longest one request may take (a part, a download).
    pub timeout: Duration,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct S3 {
    cfg: S3Config,
    http: reqwest::Client,
    /// `host[:port]` as signed.
    host: String,
}

impl S3 {
    pub fn new(cfg: S3Config) -> Result<Self, StorageError> {
        let bad = |reason: String| StorageError::Config {
            target: cfg.name.clone(),
            reason,
        };
        let host = cfg
            .endpoint
            .strip_prefix("https://")
            .or_else(|| cfg.endpoint.strip_prefix("http://"))
            .filter(|h| !h.is_empty() && !h.contains('/'))
            .ok_or_else(|| {
                bad(format!(
                    "endpoint `{}` is not http(s)://host[:port]",
                    cfg.endpoint
                ))
            })?
            .to_owned();
        if cfg.access_key_id.trim().is_empty() {
            return Err(bad(format!("{} is not set", cfg.key_envs.0)));
        }
        if cfg.secret_access_key.expose_secret().trim().is_empty() {
            return Err(bad(format!("{} is not set", cfg.key_envs.1)));
        }
        if cfg.part_size < MIN_PART_SIZE {
            return Err(bad(format!(
                "a part must be at least {MIN_PART_SIZE} bytes"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .user_agent(concat!("autogit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad(format!("HTTP client: {e}")))?;
        Ok(Self { cfg, http, host })
    }

    /// The canonical (and sent) path of `key`, or of the bucket when `None`.
    fn path(&self, key: Option<&str>) -> String {
        let mut p = format!("/{}", sigv4::uri_encode(&self.cfg.bucket));
        if let Some(k) = key {
            for seg in format!("{}{k}", self.cfg.prefix).split('/') {
                p.push('/');
                p.push_str(&sigv4::uri_encode(seg));
            }
        }
        p
    }

    fn remote(&self, detail: String) -> StorageError {
        StorageError::Remote {
            target: self.cfg.name.clone(),
            detail,
        }
    }

    /// One signed request; a non-2xx answer is turned into the error it says.
    async fn send(
        &self,
        method: Method,
        key: Option<&str>,
        query: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response, StorageError> {
        let path = self.path(key);
        let qs = sigv4::canonical_query(query);
        let url = if qs.is_empty() {
            format!("{}{path}", self.cfg.endpoint)
        } else {
            format!("{}{path}?{qs}", self.cfg.endpoint)
        };
        let amz_date = sigv4::amz_date_now();
        let content_sha = sigv4::sha256_hex(&body);
        let auth = sigv4::Signer {
            access_key_id: &self.cfg.access_key_id,
            secret_access_key: self.cfg.secret_access_key.expose_secret(),
            region: &self.cfg.region,
            service: "s3",
        }
        .authorization(&sigv4::Request {
            method: method.as_str(),
            path: &path,
            query,
            host: &self.host,
            amz_date: &amz_date,
            extra_headers: &[("x-amz-content-sha256", &content_sha)],
            payload: &body,
        });
        let resp = self
            .http
            .request(method.clone(), &url)
            .timeout(self.cfg.timeout)
            .header("x-amz-date", &amz_date)
            .header("x-amz-content-sha256", &content_sha)
            .header(reqwest::header::AUTHORIZATION, auth)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                self.remote(format!(
                    "{method} {url}: {}",
                    crate::dns::wire::error_chain(&e)
                ))
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let (code, message) = match xml::parse(&text) {
            Ok(root) => (
                root.text_at(&["Code"]).unwrap_or_default(),
                root.text_at(&["Message"]).unwrap_or_default(),
            ),
            Err(_) => (String::new(), text.chars().take(200).collect()),
        };
        let detail = format!(
            "{method} {path}: HTTP {}{}{}",
            status.as_u16(),
            if code.is_empty() {
                String::new()
            } else {
                format!(" {code}")
            },
            if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            }
        );
        Err(match (status.as_u16(), code.as_str()) {
            (_, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied")
            | (401 | 403, _) => StorageError::Auth {
                target: self.cfg.name.clone(),
                detail,
                hint: format!(
                    "{} and {} (and the bucket's policy)",
                    self.cfg.key_envs.0, self.cfg.key_envs.1
                ),
            },
            (404, "NoSuchKey") | (404, "") if key.is_some() => StorageError::NotFound {
                target: self.cfg.name.clone(),
                name: key.unwrap_or_default().to_owned(),
            },
            (404, "NoSuchBucket") => self.remote(format!(
                "bucket `{}` does not exist at {}: create it first",
                self.cfg.bucket, self.cfg.endpoint
            )),
            _ => self.remote(detail),
        })
    }

    async fn multipart(&self, file: &Path, name: &str, size: u64) -> Result<(), StorageError> {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let resp = self
            .send(Method::POST, Some(name), &q(&[("uploads", "")]), Vec::new())
            .await?;
        let text = resp.text().await.map_err(|e| self.remote(e.to_string()))?;
        let upload_id = xml::parse(&text)
            .ok()
            .and_then(|r| r.text_at(&["UploadId"]))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.remote("CreateMultipartUpload answered no UploadId".into()))?;
        let result = async {
            let mut f = tokio::fs::File::open(file).await.map_err(io_err(file))?;
            let mut etags = Vec::new();
            let parts = size.div_ceil(self.cfg.part_size).max(1);
            for n in 1..=parts {
                let off = (n - 1) * self.cfg.part_size;
                let len = self.cfg.part_size.min(size - off);
                let mut buf = vec![0u8; len as usize];
                f.seek(SeekFrom::Start(off)).await.map_err(io_err(file))?;
                f.read_exact(&mut buf).await.map_err(io_err(file))?;
                let resp = self
                    .send(
                        Method::PUT,
                        Some(name),
                        &q(&[("partNumber", &n.to_string()), ("uploadId", &upload_id)]),
                        buf,
                    )
                    .await?;
                let etag = resp
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| self.remote(format!("part {n} was answered without an ETag")))?
                    .to_owned();
                etags.push(etag);
            }
            let mut body = String::from("<CompleteMultipartUpload>");
            for (i, etag) in etags.iter().enumerate() {
                body.push_str(&format!(
                    "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                    i + 1,
                    xml::escape(etag)
                ));
            }
            body.push_str("</CompleteMultipartUpload>");
            let resp = self
                .send(
                    Method::POST,
                    Some(name),
                    &q(&[("uploadId", &upload_id)]),
                    body.into_bytes(),
                )
                .await?;
            // S3 may answer 200 with an error document when completing.
            let text = resp.text().await.map_err(|e| self.remote(e.to_string()))?;
            if let Ok(root) = xml::parse(&text)
                && root.name == "Error"
            {
                return Err(self.remote(format!(
                    "CompleteMultipartUpload failed: {}",
                    root.text_at(&["Message"]).unwrap_or_default()
                )));
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self
                .send(
                    Method::DELETE,
                    Some(name),
                    &q(&[("uploadId", &upload_id)]),
                    Vec::new(),
                )
                .await;
        }
        result
    }
}

#[async_trait::async_trait]
impl Storage for S3 {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn describe(&self) -> String {
        format!(
            "s3 {}/{}/{}",
            self.cfg.endpoint, self.cfg.bucket, self.cfg.prefix
        )
    }

    async fn put(&self, file: &Path, name: &str) -> Result<(), StorageError> {
        check_name(&self.cfg.name, name)?;
        let size = std::fs::metadata(file).map_err(io_err(file))?.len();
        if size > self.cfg.part_size {
            return self.multipart(file, name, size).await;
        }
        let body = tokio::fs::read(file).await.map_err(io_err(file))?;
        self.send(Method::PUT, Some(name), &[], body).await?;
        Ok(())
    }

    async fn get(&self, name: &str, file: &Path) -> Result<(), StorageError> {
        check_name(&self.cfg.name, name)?;
        let mut resp = self.send(Method::GET, Some(name), &[], Vec::new()).await?;
        let mut out = tokio::fs::File::create(file).await.map_err(io_err(file))?;
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            self.remote(format!("GET {name}: {}", crate::dns::wire::error_chain(&e)))
        })? {
            out.write_all(&chunk).await.map_err(io_err(file))?;
        }
        out.flush().await.map_err(io_err(file))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<RemoteObject>, StorageError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type".to_owned(), "2".to_owned()),
                ("prefix".to_owned(), self.cfg.prefix.clone()),
            ];
            if let Some(t) = &token {
                query.push(("continuation-token".to_owned(), t.clone()));
            }
            let resp = self.send(Method::GET, None, &query, Vec::new()).await?;
            let text = resp.text().await.map_err(|e| self.remote(e.to_string()))?;
            let root = xml::parse(&text)
                .map_err(|e| self.remote(format!("ListObjectsV2 answered no XML ({e})")))?;
            for c in root.all("Contents") {
                let key = c.text_at(&["Key"]).unwrap_or_default();
                let Some(name) = key.strip_prefix(&self.cfg.prefix) else {
                    continue;
                };
                if name.contains('/') || name.is_empty() {
                    continue;
                }
                out.push(RemoteObject {
                    name: name.to_owned(),
                    size: c
                        .text_at(&["Size"])
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                });
            }
            token = root.text_at(&["NextContinuationToken"]).filter(|t| {
                !t.is_empty() && root.text_at(&["IsTruncated"]).as_deref() == Some("true")
            });
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn delete(&self, name: &str) -> Result<(), StorageError> {
        check_name(&self.cfg.name, name)?;
        match self.send(Method::DELETE, Some(name), &[], Vec::new()).await {
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
