//! Pushing log lines to Loki (its push API, `POST /loki/api/v1/push`, JSON body as Grafana
//! documents it: `{"streams": [{"stream": {labels}, "values": [["<unix ns>", "<line>"]]}]}`),
//! for users whose logs outgrow the embedded store. Labels are few and bounded (`source`,
//! `service`, `level`); ids stay in the line.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LokiError {
    #[error("Loki at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("Loki at {url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
}

/// One line to push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub at_ns: i64,
    pub service: String,
    pub level: String,
    pub line: String,
}

/// The push body: one stream per (service, level), entries in the order given.
pub fn body(entries: &[Entry]) -> serde_json::Value {
    let mut streams: BTreeMap<(&str, &str), Vec<serde_json::Value>> = BTreeMap::new();
    for e in entries {
        streams
            .entry((e.service.as_str(), e.level.as_str()))
            .or_default()
            .push(serde_json::json!([e.at_ns.to_string(), e.line]));
    }
    serde_json::json!({
        "streams": streams
            .into_iter()
            .map(|((service, level), values)| serde_json::json!({
                "stream": {"source": "autogit", "service": service, "level": level},
                "values": values,
            }))
            .collect::<Vec<_>>()
    })
}

/// Pushes `entries` to the Loki at `base` (`http://loki:3100`).
pub async fn push(
    client: &reqwest::Client,
    base: &str,
    entries: &[Entry],
) -> Result<(), LokiError> {
    let url = format!("{}/loki/api/v1/push", base.trim_end_matches('/'));
    let resp = crate::telemetry::Traced::traced(
        client
            .post(&url)
            .timeout(Duration::from_secs(10))
            .json(&body(entries)),
    )
    .send()
    .await
    .map_err(|e| LokiError::Unreachable {
        url: url.clone(),
        message: e.to_string(),
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(LokiError::Refused {
        url,
        status: status.as_u16(),
        body: text.chars().take(300).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stream_per_service_and_level_with_nanosecond_strings() {
        let e = |at, s: &str, l: &str, line: &str| Entry {
            at_ns: at,
            service: s.into(),
            level: l.into(),
            line: line.into(),
        };
        let b = body(&[
            e(1_700_000_000_000_000_001, "gitlab", "error", "boom"),
            e(1_700_000_000_000_000_002, "gitlab", "info", "ok"),
            e(1_700_000_000_000_000_003, "gitlab", "error", "again"),
        ]);
        let streams = b["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(
            streams[0]["stream"],
            serde_json::json!({"source": "autogit", "service": "gitlab", "level": "error"})
        );
        assert_eq!(
            streams[0]["values"],
            serde_json::json!([
                ["1700000000000000001", "boom"],
                ["1700000000000000003", "again"]
            ])
        );
    }
}
