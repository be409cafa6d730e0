//! The client the command line's API commands share (`campaign`, `send`): where the API is,
//! its key, and errors in the API's one shape turned into a sentence.

use anyhow::{Context, bail};
use serde_json::Value;
use std::time::Duration;

pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) key: String,
}

impl Client {
    pub(super) fn new(base: &str, key: String) -> anyhow::Result<Client> {
        if key.is_empty() {
            bail!("give the API key with --api-key or the HERALD_API_KEY environment variable");
        }
        Ok(Client {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()?,
            base: format!("{}/api/messaging", base.trim_end_matches('/')),
            key,
        })
    }

    pub(super) async fn answer(response: reqwest::Response) -> anyhow::Result<Value> {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let error = at(&body, "error")
                .as_str()
                .unwrap_or("no explanation given");
            let code = at(&body, "code").as_str().unwrap_or("unknown");
            bail!("Herald answered {status}: {error} ({code})");
        }
        Ok(body)
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("could not reach Herald at {}", self.base))?;
        Self::answer(response).await
    }

    pub(super) async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .with_context(|| format!("could not reach Herald at {}", self.base))?;
        Self::answer(response).await
    }
}

pub(super) fn at<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}
