//! The typed client: one generic call for every operation, from the same definitions the
//! server routes. `client.call::<ListServices>(&NoParams {}, &ServiceQuery::default(), &NoBody {})`
//! returns a `ServiceList` or the server's problem.

use crate::op::{Operation, RequestBody, Verb, fill_path};
use crate::problem::Problem;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// What a call can end with besides the response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a problem.
    #[error("{0}")]
    Problem(Problem),
    /// No answer, or one that is not the documented shape.
    #[error("{0}")]
    Transport(String),
}

/// A client of one server, authenticated with an API key or a token.
#[derive(Clone)]
pub struct Client {
    base: String,
    credential: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("credential", &"<redacted>")
            .finish()
    }
}

impl Client {
    /// `base`: the server's root (`https://api.example.com`), without `/api/v1`.
    pub fn new(base: &str, credential: SecretString) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ClientError::Transport(format!(
                "--api `{base}`: give the server's URL, e.g. https://api.example.com"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("autogit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self {
            base,
            credential,
            http,
        })
    }

    /// Calls operation `O`.
    pub async fn call<O: Operation>(
        &self,
        path: &O::Path,
        query: &O::Query,
        body: &O::Body,
    ) -> Result<O::Response, ClientError> {
        let info = O::INFO;
        let params =
            serde_json::to_value(path).map_err(|e| ClientError::Transport(e.to_string()))?;
        let p = fill_path(info.path, &params).ok_or_else(|| {
            ClientError::Transport(format!("{}: a path parameter is missing", info.id))
        })?;
        let url = format!("{}{p}", self.base);
        let method = match info.verb {
            Verb::Get => reqwest::Method::GET,
            Verb::Post => reqwest::Method::POST,
            Verb::Delete => reqwest::Method::DELETE,
        };
        let mut req = self
            .http
            .request(method, &url)
            .query(query)
            .bearer_auth(self.credential.expose_secret());
        if <O::Body as RequestBody>::present() {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("{url}: {}", e.without_url())))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Transport(format!("{url}: {}", e.without_url())))?;
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Transport(format!("{url}: the answer is not a {}: {e}", info.id))
            })
        } else {
            Err(match serde_json::from_slice::<Problem>(&bytes) {
                Ok(p) => ClientError::Problem(p),
                Err(_) => ClientError::Transport(format!("{url}: {status}")),
            })
        }
    }
}
